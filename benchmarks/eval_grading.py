"""Grading agreement and throughput, and sandbox throughput (programs/s).

Agreement: on the free-text case table (tests/helpers/grading_cases.py), dsmath's math_verify mode vs math-verify's own
parse + verify called directly (boxed-first configuration, and math-verify's defaults), and each vs the expected labels.
Throughput: grading the MATH test reference solutions (full text, extraction included) against their gold answers;
peer: math_verify.parse + verify called directly in-process (no workers, no time limit), and a plain
`subprocess.run([sys.executable, '-c', code])` with no limits for the sandbox. Medians of >= 5 reps after a warm-up.
Usage: python -m benchmarks.eval_grading [--reps 5] [--num 5000] [--programs 40]
"""
import argparse
import logging
import subprocess
import sys
from pathlib import Path

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from dsmath.data.benchmarks import load_math
from dsmath.grading import Grader
from dsmath.grading.sandbox import namespace_isolation_available, run_programs
from benchmarks.timing import median_time

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from grading_cases import CASES  # noqa: E402

BOXED_FIRST = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


def _agreement(workers: int) -> None:
  logging.getLogger("math_verify").setLevel(logging.ERROR)
  texts, golds, labels, _ = zip(*CASES)
  with Grader(num_workers=workers) as g:
    ours = list(g.grade_many(texts, golds))
  same_cfg = [bool(verify(parse("\\boxed{" + gd + "}", BOXED_FIRST), parse(t, BOXED_FIRST)))
              for t, gd in zip(texts, golds)]
  defaults = [bool(verify(parse("\\boxed{" + gd + "}"), parse(t))) for t, gd in zip(texts, golds)]
  lab = range(len(CASES))
  n = len(CASES)
  print(f"| agreement on {n} free-text cases ({len(lab)} labelled) | dsmath math_verify mode | "
        "math-verify parse+verify (boxed first) | math-verify parse+verify (defaults) |")
  print("|---|---|---|---|")
  print(f"| same verdict as math-verify (boxed first) | {sum(a == b for a, b in zip(ours, same_cfg))}/{n} | - | "
        f"{sum(a == b for a, b in zip(defaults, same_cfg))}/{n} |")
  print("| matches the expected label | " + " | ".join(
      f"{sum(v[i] == labels[i] for i in lab)}/{len(lab)}" for v in (ours, same_cfg, defaults)) + " |")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--num", type=int, default=5000)
  ap.add_argument("--programs", type=int, default=40)
  ap.add_argument("--workers", type=int, default=2)
  a = ap.parse_args()
  _agreement(a.workers)
  recs = load_math("test")[:a.num]
  texts, golds = [r.metadata["solution"] for r in recs], [r.answer for r in recs]
  with Grader(num_workers=a.workers, fast_path=False) as g:
    t_ours = median_time(lambda: g.grade_many(texts, golds), a.reps)

  def peer():
    for t, gold in zip(texts, golds):
      verify(parse("\\boxed{" + gold + "}", BOXED_FIRST), parse(t, BOXED_FIRST))
  t_peer = median_time(peer, a.reps)
  n = len(texts)
  print()
  print("| what | dsmath | peer | ratio (dsmath/peer throughput) |")
  print("|---|---|---|---|")
  print(f"| grading MATH test solutions (full text) vs gold, {n} answers, math_verify mode, fast path off, "
        f"{a.workers} workers, per-answer limit | {n / t_ours:.0f} answers/s | {n / t_peer:.0f} answers/s "
        f"(math_verify parse+verify in-process, no limit) | {t_peer / t_ours:.2f} |")

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
