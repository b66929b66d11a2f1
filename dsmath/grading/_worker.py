"""A grading worker process (started by `pool.Grader`): receives (kind, a, b, mode) items one at a time and answers
(verdict, extracted answer, soft_timed_out); None stops it.

Usage: python -m dsmath.grading._worker FD_IN FD_OUT SOFT_TIMEOUT_S
"""
import multiprocessing.connection
import sys
import warnings


def main(fd_in: int, fd_out: int, soft_timeout_s: int) -> None:
  warnings.filterwarnings("ignore")
  recv = multiprocessing.connection.Connection(fd_in, writable=False)
  send = multiprocessing.connection.Connection(fd_out, readable=False)
  from dsmath.grading import equivalence
  equivalence.count_soft_timeouts()
  equivalence.mv_grade_text("\\boxed{1}", "1", soft_timeout_s)  # warm imports and caches before the first item
  send.send("ready")  # the parent's per-answer clock starts only after this slow start
  while True:
    try:
      msg = recv.recv()
    except EOFError:
      return
    if msg is None:
      return
    kind, a, b, mode = msg
    before = equivalence.soft_timeouts
    verdict, answer = equivalence.run_item(kind, a, b, mode, soft_timeout_s)
    # A soft alarm that fired on a False verdict counts as a timeout (a True verdict did not depend on it).
    send.send((verdict, answer, not verdict and equivalence.soft_timeouts > before))


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
