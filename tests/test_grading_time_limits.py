"""Bounded grading time (issue #15 §3): extraction runs inside the worker's limit, the limit is per answer (not per
batch), timeouts are counted per batch, and `submit` does not block. Speed is bounded in CPU time against a reference
workload measured here, never in wall time (which a loaded machine stretches); wall-clock limits are checked
against what they imply on any machine."""
import concurrent.futures
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from dsmath.grading import Grader, extract_answer, extract_last_boxed, grade, grade_text_inprocess

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from timing import cpu_seconds, machine_unit  # noqa: E402

# Paper-mode answers whose sympy work takes >= 2 s even with 1 s alarms (two alarmed comparisons of the equation
# branch in a row, then a third): under a 1.5 s hard limit each one must be killed by the pool.
SLOW_PAPER = [r"\boxed{x = 2^{2^{2^{2^{5}}}}}", r"\boxed{x = 3^{3^{3^{3^{4}}}}}", r"\boxed{x = 5^{5^{5^{5^{3}}}}}"]


def test_deeply_nested_unclosed_boxes_are_fast():
  def scan():
    return (extract_last_boxed("\\boxed{" * 60000), extract_answer("\\boxed{" * 60000),
            extract_last_boxed("\\boxed{" * 60000 + "7}"))
  out, cpu = cpu_seconds(scan)
  assert out == (None, None, "7")
  # linear: 2.5 units here (0.1 s); the old quadratic scan took 19 s for a tenth of these boxes
  assert cpu < 50 * machine_unit(), (cpu, machine_unit())


@pytest.mark.parametrize("mode", ["math_verify", "paper"])
def test_grade_of_6000_open_boxes_returns_false_quickly(mode):
  assert grade(r"The answer is $\frac{1}{2}$.", "0.5", mode)
  assert not grade("\\boxed{" * 6000, "1", mode)  # through the worker pool
  grade_text_inprocess(r"The answer is $\frac{1}{2}$.", "0.5", mode)  # imports and caches warm
  (verdict, _), cpu = cpu_seconds(lambda: grade_text_inprocess("\\boxed{" * 6000, "1", mode))  # a worker's work
  assert not verdict and cpu < 100 * machine_unit(), (cpu, machine_unit())  # about 1 unit here


def test_limit_is_per_answer_and_slow_answers_run_in_parallel():
  timeout_s = 1.5
  with Grader(num_workers=4, timeout_s=timeout_s, mode="paper") as g:
    assert all(g.grade_many([r"\boxed{\frac{1}{2}}"] * 4, ["0.5"] * 4))  # all four workers started and warm
    t = time.monotonic()
    v = g.grade_many(SLOW_PAPER + [r"The answer is \boxed{\frac{1}{2}}."], ["x = 2"] * 3 + ["0.5"])
    elapsed = time.monotonic() - t
    assert list(v) == [False, False, False, True]
    assert v.timed_out == [True, True, True, False] and v.timeouts == 3 and g.timeouts == 3
    # One limit in parallel, not one per slow answer in turn: limits run one after another cannot end before
    # 3 x 1.5 s on any machine (each answer is killed 1.5 s after it starts), nor the answers before their limit.
    assert timeout_s <= elapsed < len(SLOW_PAPER) * timeout_s, elapsed


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
  # The first batch's answer takes at least math-verify's 4 s alarm (timeout_s // 3) on its worker, so a submit that
  # waited for the grading could not return it unfinished; the second batch, on the other (idle, warm) worker, ends
  # first: the order the futures finish in, not a wall-clock bound (three easy answers against a 4 s alarm).
  with Grader(num_workers=2, timeout_s=12) as g:
    assert list(g.grade_many([r"$\frac12$", r"$\frac14$"], ["0.5", "0.25"])) == [True, True]  # both workers warm
    finished = []
    f1 = g.submit([r"\boxed{9^{9^{9^{9}}}}"], ["2"])
    assert isinstance(f1, concurrent.futures.Future) and not f1.done()  # the caller was not blocked
    f1.add_done_callback(lambda _: finished.append("first"))
    f2 = g.submit([r"$\frac13$", "So 7.", r"$[0,1)$"], [r"\frac{1}{3}", "8", "[0,1)"], "math_verify")
    f2.add_done_callback(lambda _: finished.append("second"))
    assert list(f2.result(timeout=120)) == [True, False, True]
    v = f1.result(timeout=120)
    assert list(v) == [False] and v.timed_out == [True]
  assert finished == ["second", "first"]  # batches overlap: the second did not wait for the first


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


def _cpu_ticks(pid: int) -> int:
  """utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15)."""
  fields = _read_proc(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[1].split()
  return int(fields[11]) + int(fields[12])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_worker_killed_from_outside_grades_false_and_pool_recovers():
  # As when the OOM killer takes a worker: its answer is False (a failure, not a timeout) and grading goes on.
  others = set(_worker_pids())  # workers of graders other tests left running
  with Grader(num_workers=1, timeout_s=60, mode="paper") as g:
    assert g.grade_many([r"\boxed{0.5}"], [r"\frac12"]) == [True]
    (pid,) = set(_worker_pids()) - others
    cpu_before = _cpu_ticks(pid)
    f = g.submit([SLOW_PAPER[0]], ["x = 2"])
    while _cpu_ticks(pid) < cpu_before + 10:  # the idle worker spends no CPU: this one is working on the answer
      assert not f.done()
      time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    v = f.result(timeout=30)
    assert list(v) == [False] and v.failures == 1 and v.timeouts == 0
    assert g.grade_many([r"\boxed{0.5}"], [r"\frac12"]) == [True]
