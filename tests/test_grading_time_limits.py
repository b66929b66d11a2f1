"""Bounded grading time (issue #15 §3): extraction runs inside the worker's limit, the limit is per answer (not per
batch), timeouts are counted per batch, and `submit` does not block."""
import concurrent.futures
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dsmath.grading import Grader, extract_answer, extract_last_boxed, grade

# Paper-mode answers whose sympy work takes >= 2 s even with 1 s alarms (two alarmed comparisons of the equation
# branch in a row, then a third): under a 1.5 s hard limit each one must be killed by the pool.
SLOW_PAPER = [r"\boxed{x = 2^{2^{2^{2^{5}}}}}", r"\boxed{x = 3^{3^{3^{3^{4}}}}}", r"\boxed{x = 5^{5^{5^{5^{3}}}}}"]


def test_deeply_nested_unclosed_boxes_are_fast():
  t = time.monotonic()
  assert extract_last_boxed("\\boxed{" * 60000) is None
  assert extract_answer("\\boxed{" * 60000) is None
  assert extract_last_boxed("\\boxed{" * 60000 + "7}") == "7"
  assert time.monotonic() - t < 2  # linear: the old scan was quadratic (19 s for 6000 boxes)


@pytest.mark.parametrize("mode", ["math_verify", "paper"])
def test_grade_of_6000_open_boxes_returns_false_quickly(mode):
  assert grade(r"The answer is $\frac{1}{2}$.", "0.5", mode)  # start the shared workers before timing
  t = time.monotonic()
  assert not grade("\\boxed{" * 6000, "1", mode)
  assert time.monotonic() - t < 5


def test_limit_is_per_answer_and_slow_answers_run_in_parallel():
  with Grader(num_workers=4, timeout_s=1.5, mode="paper") as g:
    assert all(g.grade_many([r"\boxed{\frac{1}{2}}"] * 4, ["0.5"] * 4))  # all four workers started and warm
    t = time.monotonic()
    v = g.grade_many(SLOW_PAPER + [r"The answer is \boxed{\frac{1}{2}}."], ["x = 2"] * 3 + ["0.5"])
    elapsed = time.monotonic() - t
    assert list(v) == [False, False, False, True]
    assert v.timed_out == [True, True, True, False] and v.timeouts == 3 and g.timeouts == 3
    # One limit in parallel (1.5 s), not one per slow answer in turn (4.5 s) nor a batch limit.
    assert elapsed < 3.2, elapsed


def test_answer_behind_a_slow_one_keeps_its_full_budget():
  # One worker: the slow answer is killed at its own limit, the next ones run on a fresh worker with their own clock.
  with Grader(num_workers=1, timeout_s=1.5, mode="paper") as g:
    v = g.grade_many([SLOW_PAPER[0], r"\boxed{0.5}", r"so \boxed{2}"], ["x = 2", r"\frac12", "2.0"])
    assert list(v) == [False, True, True] and v.timeouts == 1
    assert g.grade_many([r"\boxed{3}"], ["3.0"]) == [True]  # the pool keeps working after a kill


def test_math_verify_alarm_timeouts_are_counted():
  # math-verify's own alarm stops sympy here (no kill needed); the answer is still reported as timed out.
  with Grader(num_workers=2, timeout_s=4) as g:
    v = g.grade_many([r"\boxed{9^{9^{9^{9}}}}", r"\boxed{\frac{1}{2}}"], ["2", "0.5"])
  assert list(v) == [False, True] and v.timed_out == [True, False] and v.timeouts == 1


def test_submit_returns_a_future_at_once_and_batches_overlap():
  with Grader(num_workers=2, timeout_s=10) as g:
    t = time.monotonic()
    f1 = g.submit([r"$\frac13$", "So 7."], [r"\frac{1}{3}", "8"])
    f2 = g.submit([r"$[0,1)$"], ["[0,1)"], "math_verify")
    assert time.monotonic() - t < 0.5 and isinstance(f1, concurrent.futures.Future)
    assert not f1.done()  # the workers are still starting: the caller was not blocked
    assert list(f1.result(timeout=120)) == [True, False] and list(f2.result(timeout=120)) == [True]


def test_submit_from_many_threads():
  with Grader(num_workers=2, timeout_s=10) as g:
    out = {}

    def work(k):
      out[k] = list(g.grade_many([f"so the answer is ${k}/2$"], [str(k / 2)]))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
      th.start()
    for th in threads:
      th.join()
  assert out == {k: [True] for k in range(8)}


def test_fast_path_needs_no_worker():
  with Grader(num_workers=1) as g:
    f = g.submit(["7 + 5 = 12, so \\boxed{12}.", "\\boxed{-3}", "\\[\\boxed{40}\\]"], ["12", "3", "40"])
    assert f.done() and list(f.result()) == [True, False, True] and f.result().answers == ["12", "-3", "40"]
    assert g._thread is None  # no process was started
    with pytest.raises(ValueError, match="unknown grading mode"):
      g.submit(["1"], ["1"], "strict")
    with pytest.raises(ValueError, match="2 predictions but 1 gold"):
      g.submit(["1", "2"], ["1"])


def test_closed_grader_refuses_work():
  g = Grader(num_workers=1)
  g.close()
  with pytest.raises(RuntimeError, match="closed"):
    g.grade_many(["$x$"], ["x"])


def _read_proc(path: Path) -> bytes:
  # Threads and processes come and go while we read /proc (other tests' graders wind down): a vanished entry is
  # simply not there, not an error.
  try:
    return path.read_bytes()
  except (FileNotFoundError, ProcessLookupError):
    return b""


def _worker_pids() -> list[int]:
  pids = []
  for task in Path("/proc/self/task").iterdir():
    for pid in _read_proc(task / "children").split():
      if b"dsmath.grading._worker" in _read_proc(Path(f"/proc/{pid.decode()}/cmdline")):
        pids.append(int(pid))
  return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_worker_killed_from_outside_grades_false_and_pool_recovers():
  # As when the OOM killer takes a worker: its answer is False (a failure, not a timeout) and grading goes on.
  others = set(_worker_pids())  # workers of graders other tests left running
  with Grader(num_workers=1, timeout_s=60, mode="paper") as g:
    assert g.grade_many([r"\boxed{0.5}"], [r"\frac12"]) == [True]
    f = g.submit([SLOW_PAPER[0]], ["x = 2"])
    time.sleep(0.5)
    (pid,) = set(_worker_pids()) - others
    os.kill(pid, signal.SIGKILL)
    v = f.result(timeout=30)
    assert list(v) == [False] and v.failures == 1 and v.timeouts == 0
    assert g.grade_many([r"\boxed{0.5}"], [r"\frac12"]) == [True]
