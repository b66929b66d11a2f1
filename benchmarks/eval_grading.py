"""Grading throughput (answers/s) over the MATH test gold set and sandbox throughput (programs/s).

Peers, timed in the same run: math_verify.parse+verify called directly in-process (no workers, no time limit), and a
plain `subprocess.run([sys.executable, '-c', code])` with no limits. Medians of >= 5 reps after a warm-up.
Usage: python -m benchmarks.eval_grading [--reps 5] [--num 5000] [--programs 40]
"""
import argparse
import subprocess
import sys

from math_verify import parse, verify

from dsmath.eval.benchmarks import load_math
from dsmath.eval.grading import Grader, extract_answer
from dsmath.eval.sandbox import namespace_isolation_available, run_programs
from benchmarks.timing import median_time


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--num", type=int, default=5000)
  ap.add_argument("--programs", type=int, default=40)
  ap.add_argument("--workers", type=int, default=2)
  a = ap.parse_args()
  recs = load_math("test")[:a.num]
  pairs = [(extract_answer(r.metadata["solution"]), r.answer) for r in recs]
  with Grader(num_workers=a.workers) as g:
    t_ours = median_time(lambda: g.equal_many(pairs, fast_path=False), a.reps)

  def peer():
    for p, gold in pairs:
      verify(parse("\\boxed{" + gold + "}"), parse("\\boxed{" + p + "}"))
  t_peer = median_time(peer, a.reps)
  n = len(pairs)
  print("| what | dsmath | peer | ratio (dsmath/peer throughput) |")
  print("|---|---|---|---|")
  print(f"| grading MATH test gold, {n} answers, math_verify mode, fast path off, {a.workers} workers "
        f"| {n / t_ours:.0f} answers/s | {n / t_peer:.0f} answers/s (math_verify in-process) | {t_peer / t_ours:.2f} |")

  code = "print(sum(i * i for i in range(1000)))"
  codes = [code] * a.programs
  t_sbx = median_time(lambda: run_programs(codes, timeout_s=10, max_workers=4), a.reps)
  t_plain = median_time(lambda: [subprocess.run([sys.executable, "-c", c], capture_output=True) for c in codes],
                         a.reps)
  iso = "namespace" if namespace_isolation_available() else "rlimits"
  print(f"| sandbox, {a.programs} short programs, isolation={iso}, 4 threads | {a.programs / t_sbx:.1f} programs/s "
        f"| {a.programs / t_plain:.1f} programs/s (plain subprocess.run, sequential) | {t_plain / t_sbx:.2f} |")


if __name__ == "__main__":
  main()
