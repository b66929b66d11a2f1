"""A pool of grading worker processes: every answer, extraction included, runs under its own hard time limit.

`Grader.submit(texts, golds, mode)` queues a batch and returns a `concurrent.futures.Future[Verdicts]` at once (a
trainer overlaps grading with device work); `grade_many` is its blocking form; `submit_answers` / `equal_many` grade
pairs of already-extracted answers (program outputs, Maj@k grouping). A dispatcher thread hands items one at a time to
idle workers, so no answer waits behind a slow one in the same worker, and each item's clock starts when it is sent:
an item that overruns `timeout_s` has its worker killed (and replaced in the background), is graded False and counted
in `Verdicts.timeouts`; the other items keep their full budget. math-verify's own signal alarms (`soft_timeout_s`)
stop most slow sympy work earlier without a restart; they are counted as timeouts too.

The fast path (`answers.boxed_integer_fast_path`) decides a text whose only answer is a final boxed integer against an
integer gold in this process, with no round trip; it answers only where math-verify's extraction cannot read
anything else, so it never disagrees with the workers (tests/test_grading_fast_path.py checks that on real
math-verify output).
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import dataclasses
import functools
import multiprocessing.connection
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from dsmath.grading.answers import boxed_integer_fast_path
from dsmath.grading.equivalence import check_mode

_STARTUP_TIMEOUT_S = 300.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding dsmath/, for the workers' sys.path


class Verdicts(list):
  """A batch's verdicts (list[bool], in input order) with what callers report about the batch.

  answers: the extracted answer per item (math-verify's normalised string in math_verify mode, the rule-extracted
    string in paper mode, the given answer for answer pairs), None where nothing was extracted or the item timed out.
  timed_out: per item, whether it hit a time limit (graded False). timeouts: how many did.
  failures: items whose worker died (e.g. killed for memory), graded False.
  """

  def __init__(self, verdicts=(), answers=None, timed_out=None, failures: int = 0):
    super().__init__(bool(v) for v in verdicts)
    self.answers: list[str | None] = list(answers) if answers is not None else [None] * len(self)
    self.timed_out: list[bool] = list(timed_out) if timed_out is not None else [False] * len(self)
    self.failures = failures

  @property
  def timeouts(self) -> int:
    return sum(self.timed_out)


@dataclasses.dataclass
class _Job:
  future: concurrent.futures.Future
  verdicts: list
  answers: list
  timed_out: list
  remaining: int
  failures: int = 0

  def set(self, i: int, verdict: bool, answer, timed_out: bool = False, failed: bool = False) -> None:
    self.verdicts[i], self.answers[i], self.timed_out[i] = bool(verdict), answer, bool(timed_out)
    self.failures += failed
    self.remaining -= 1
    if self.remaining == 0 and not self.future.done():
      self.future.set_result(Verdicts(self.verdicts, self.answers, self.timed_out, self.failures))


class _Worker:
  """One worker process (`python -m dsmath.grading._worker FD_IN FD_OUT SOFT`) over two pipes with multiprocessing's
  framing. A plain subprocess, not multiprocessing.Process: that would re-import the caller's __main__ (spawn) or fork
  a parent that may hold JAX threads."""

  def __init__(self, soft_timeout_s: int):
    c2p_r, c2p_w = os.pipe()
    p2c_r, p2c_w = os.pipe()
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=_PACKAGE_ROOT + (os.pathsep + path if path else ""))
    try:
      self.proc = subprocess.Popen([sys.executable, "-m", "dsmath.grading._worker", str(p2c_r), str(c2p_w),
                                    str(soft_timeout_s)], pass_fds=(p2c_r, c2p_w), env=env, stdin=subprocess.DEVNULL)
    finally:
      os.close(p2c_r)
      os.close(c2p_w)
    self.send_conn = multiprocessing.connection.Connection(p2c_w, readable=False)
    self.recv_conn = multiprocessing.connection.Connection(c2p_r, writable=False)
    self.ready = False
    self.started = time.monotonic()
    self.item: tuple[_Job, int] | None = None  # what it is grading now
    self.deadline = 0.0

  def kill(self) -> None:
    self.proc.kill()
    self.proc.wait()
    self.send_conn.close()
    self.recv_conn.close()

  def stop(self) -> None:
    try:
      self.send_conn.send(None)
      self.proc.wait(timeout=2)
    except (OSError, subprocess.TimeoutExpired):
      pass
    self.kill()


class Grader:
  """A persistent pool of grading workers with a hard per-answer time limit (see the module docstring).

  num_workers: processes (default min(4, CPUs)), started on demand. timeout_s: the hard limit per answer.
  mode: the default grading mode ("math_verify" or "paper"). fast_path: decide boxed-integer answers in process.
  Use as a context manager or call `close()`. Thread-safe; `timeouts` counts every timed-out answer so far.
  """

  def __init__(self, num_workers: int | None = None, *, timeout_s: float = 10.0, mode: str = "math_verify",
               fast_path: bool = True):
    self.mode = check_mode(mode)
    self.timeout_s = float(timeout_s)
    if self.timeout_s <= 0:
      raise ValueError(f"Grader timeout_s must be > 0, got {timeout_s}")
    # math-verify's alarms take whole seconds; three phases (two parses, verify) fit inside the hard limit.
    self.soft_timeout_s = max(1, int(self.timeout_s // 3))
    self.num_workers = int(num_workers or max(1, min(4, os.cpu_count() or 1)))
    self.fast_path = fast_path
    self.timeouts = 0
    self._queue: collections.deque[tuple[_Job, int, tuple]] = collections.deque()
    self._lock = threading.Lock()
    self._wake_r, self._wake_w = os.pipe()  # submit/close -> dispatcher wake-ups
    os.set_blocking(self._wake_w, False)
    self._thread: threading.Thread | None = None
    self._closed = False

  # -- public API ------------------------------------------------------------------------------------------------------

  def submit(self, texts: Sequence[str | None], golds: Sequence[str | None],
             mode: str | None = None) -> concurrent.futures.Future:
    """Grades model texts against gold answers; returns at once a Future of `Verdicts` (extraction in the worker)."""
    if len(texts) != len(golds):
      raise ValueError(f"{len(texts)} predictions but {len(golds)} gold answers")
    return self._submit("text", texts, golds, check_mode(mode or self.mode), self.fast_path)

  def submit_answers(self, pairs: Sequence[tuple[str | None, str | None]], mode: str | None = None, *,
                     fast_path: bool = True) -> concurrent.futures.Future:
    """Like `submit` for (pred_answer, gold_answer) pairs of already-extracted answers."""
    pairs = list(pairs)
    return self._submit("answer", [p for p, _ in pairs], [g for _, g in pairs], check_mode(mode or self.mode),
                        fast_path and self.fast_path)

  def grade_many(self, texts: Sequence[str | None], golds: Sequence[str | None], mode: str | None = None) -> Verdicts:
    """Blocking `submit`: Verdicts (list[bool] plus .answers, .timed_out, .timeouts) for texts vs golds."""
    return self.submit(texts, golds, mode).result()

  def equal_many(self, pairs: Sequence[tuple[str | None, str | None]], mode: str | None = None, *,
                 fast_path: bool = True) -> Verdicts:
    """Blocking `submit_answers`. None on either side is False. fast_path=False sends every pair to a worker."""
    return self.submit_answers(pairs, mode, fast_path=fast_path).result()

  def close(self) -> None:
    """Stops the workers; batches still queued or in flight fail with RuntimeError."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      self._wake()
      thread = self._thread
    if thread is not None:
      thread.join()
    with self._lock:  # only now: a submit that saw the grader open has already written to the pipe
      os.close(self._wake_r)
      os.close(self._wake_w)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # -- submission ------------------------------------------------------------------------------------------------------

  def _submit(self, kind: str, firsts: Sequence, seconds: Sequence, mode: str,
              fast_path: bool) -> concurrent.futures.Future:
    if self._closed:
      raise RuntimeError("Grader is closed")
    n = len(firsts)
    job = _Job(concurrent.futures.Future(), [False] * n, [None] * n, [False] * n, n)
    todo = []
    for i, (a, b) in enumerate(zip(firsts, seconds)):
      if a is None or b is None:
        job.set(i, False, None)
        continue
      a, b = str(a), str(b)
      fast = None
      if fast_path:
        fast = boxed_integer_fast_path(a if kind == "text" else "\\boxed{" + a.strip() + "}", b)
        if fast is not None and not fast[0] and mode == "paper":
          fast = None  # the percent rule may still accept (N = gold*100 or gold/100): ask the worker
      if fast is None:
        todo.append((job, i, (kind, a, b, mode)))
      else:
        job.set(i, fast[0], fast[1])
    if n == 0:
      job.future.set_result(Verdicts())
    if todo:
      with self._lock:
        if self._closed:
          raise RuntimeError("Grader is closed")
        self._queue.extend(todo)
        if self._thread is None:
          self._thread = threading.Thread(target=self._loop, name="dsmath-grader", daemon=True)
          self._thread.start()
        self._wake()
    return job.future

  def _wake(self) -> None:
    """Wakes the dispatcher; called with the lock held, so the pipe cannot be closed meanwhile."""
    try:
      os.write(self._wake_w, b"x")
    except BlockingIOError:  # the pipe is full of earlier wake-ups: the dispatcher will wake anyway
      pass

  # -- the dispatcher thread -------------------------------------------------------------------------------------------

  def _loop(self) -> None:
    workers: list[_Worker] = []
    error: BaseException = RuntimeError("Grader closed before this batch was graded")
    try:
      while True:
        with self._lock:
          if self._closed:
            break
          pending = len(self._queue)
        self._spawn_for(workers, pending)
        self._dispatch(workers)
        now = time.monotonic()
        deadlines = [w.deadline for w in workers if w.item is not None] + \
            [w.started + _STARTUP_TIMEOUT_S for w in workers if not w.ready]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        ready = multiprocessing.connection.wait([self._wake_r] + [w.recv_conn for w in workers], timeout)
        if self._wake_r in ready:
          os.read(self._wake_r, 4096)
        for w in list(workers):
          if w.recv_conn in ready:
            self._receive(w, workers)
        self._enforce_deadlines(workers)
    except BaseException as e:  # e.g. no process can be started: every waiting batch gets the error, not a hang
      error = RuntimeError(f"grading dispatcher failed: {e!r}")
      raise
    finally:
      for w in workers:
        if w.item is not None:
          w.kill()
          job, _ = w.item
          if not job.future.done():
            job.future.set_exception(error)
        else:
          w.stop()
      with self._lock:
        queued, self._queue = list(self._queue), collections.deque()
        self._thread = None  # a later submit starts a fresh dispatcher
      for job, _, _ in queued:
        if not job.future.done():
          job.future.set_exception(error)

  def _spawn_for(self, workers: list[_Worker], pending: int) -> None:
    free = sum(1 for w in workers if w.item is None)  # idle or still starting
    for _ in range(min(self.num_workers - len(workers), pending - free)):
      workers.append(_Worker(self.soft_timeout_s))

  def _dispatch(self, workers: list[_Worker]) -> None:
    for w in workers:
      if not w.ready or w.item is not None:
        continue
      with self._lock:
        if not self._queue:
          return
        job, i, payload = self._queue.popleft()
      try:
        w.send_conn.send(payload)
      except OSError:  # died while idle: the next wait() sees its EOF; put the item back
        with self._lock:
          self._queue.appendleft((job, i, payload))
        continue
      w.item, w.deadline = (job, i), time.monotonic() + self.timeout_s

  def _receive(self, w: _Worker, workers: list[_Worker]) -> None:
    try:
      msg = w.recv_conn.recv()
    except (EOFError, OSError):
      workers.remove(w)
      rc = w.proc.poll()
      w.kill()
      if w.item is not None:  # died on this item (a C-level crash, the OOM killer): graded False
        job, i = w.item
        job.set(i, False, None, failed=True)
      elif not w.ready:
        self._fail_queued(RuntimeError(f"grading worker exited with code {rc} before it was ready "
                                       f"({sys.executable} -m dsmath.grading._worker; its stderr is above)"))
      return
    if not w.ready:
      w.ready = msg == "ready"
      return
    job, i = w.item
    w.item = None
    verdict, answer, soft_timed_out = msg  # soft_timed_out: a math-verify alarm fired and the verdict is False
    if soft_timed_out:
      with self._lock:
        self.timeouts += 1
    job.set(i, verdict, answer, timed_out=soft_timed_out)

  def _enforce_deadlines(self, workers: list[_Worker]) -> None:
    now = time.monotonic()
    for w in list(workers):
      if w.item is not None and now >= w.deadline:
        workers.remove(w)
        w.kill()  # the replacement starts in the background on the next pass, only if work is queued
        job, i = w.item
        with self._lock:
          self.timeouts += 1
        job.set(i, False, None, timed_out=True)
      elif not w.ready and now >= w.started + _STARTUP_TIMEOUT_S:
        workers.remove(w)
        w.kill()
        self._fail_queued(RuntimeError(f"grading worker did not start within {_STARTUP_TIMEOUT_S:.0f}s"))

  def _fail_queued(self, err: Exception) -> None:
    with self._lock:
      queued, self._queue = list(self._queue), collections.deque()
    for job, _, _ in queued:
      if not job.future.done():
        job.future.set_exception(err)


@functools.lru_cache(maxsize=1)
def default_grader() -> Grader:
  """A process-wide Grader, created on first use and closed at exit (for the one-call `grade` API)."""
  g = Grader()
  atexit.register(g.close)
  return g


def grade(prediction_text: str, gold_answer: str, mode: str = "math_verify") -> bool:
  """True when the answer in `prediction_text` is equivalent to `gold_answer` under `mode` (time-limited)."""
  return default_grader().grade_many([prediction_text], [gold_answer], mode)[0]


def grade_answers(pairs: Iterable[tuple[str | None, str | None]], mode: str = "math_verify") -> Verdicts:
  """Verdicts for (pred_answer, gold_answer) pairs of extracted answers on the process-wide Grader."""
  return default_grader().equal_many(list(pairs), mode)
