"""An evaluation's verdicts recomputed from what it wrote: every sample's output graded again against its gold answer
by a separate, in-process grader call (no worker pool, no evaluation code), and the metrics computed from them."""
import json
import math

from dsmath.grading import grade_text_inprocess


def regraded(results_path) -> tuple[dict, list[list[bool]]]:
  """(the written results, verdicts [problem][sample] recomputed from the outputs and gold answers)."""
  with open(results_path) as f:
    res = json.load(f)
  mode = res["summary"]["grading_mode"]
  return res, [[grade_text_inprocess(s["output"], row["gold"], mode)[0] for s in row["samples"]]
               for row in res["samples"]]


def pass_at_k(verdicts: list[list[bool]], k: int) -> float:
  """Chen et al. (2021): the mean over problems of 1 - C(n - c, k) / C(n, k)."""
  return sum(1 - math.comb(len(v) - sum(v), k) / math.comb(len(v), k) for v in verdicts) / len(verdicts)
