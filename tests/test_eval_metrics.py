"""Pass@k against the exact combinatorial formula, Maj@k grouping and tie-break, bootstrap CIs, plots."""
import itertools
import math

import numpy as np
import pytest

from dsmath.eval import metrics as M
from dsmath.files import write_json_atomic
from dsmath.grading import passk


def _exact(n, c, k):
  return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_combinatorial_formula():
  for n in range(1, 13):
    for c in range(n + 1):
      for k in range(1, n + 1):
        assert passk.pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_matches_enumeration_of_subsets():
  correct = [1, 0, 0, 1, 0, 1, 0]
  n = len(correct)
  for k in range(1, n + 1):
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
    assert passk.pass_at_k(n, sum(correct), k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_stable_large_n():
  n = 1024
  for c in (0, 1, 2, 17, 512, 1023, 1024):
    for k in (1, 2, 16, 64, 256, 1024):
      v = float(passk.pass_at_k(n, c, k))
      assert 0.0 <= v <= 1.0 and np.isfinite(v)
      assert v == pytest.approx(_exact(n, c, k), rel=1e-9, abs=1e-12), (c, k)  # Python big ints are exact
  assert passk.pass_at_k(1024, 1, 1) == pytest.approx(1 / 1024)
  vec = passk.pass_at_k(np.array([1024, 1024]), np.array([0, 3]), 64)
  assert vec.shape == (2,) and vec[0] == 0.0
  with pytest.raises(ValueError):
    passk.pass_at_k(4, 5, 1)
  with pytest.raises(ValueError):
    passk.pass_at_k(4, 1, 5)


def test_group_answers_uses_equivalence_not_strings():
  answers = [["0.5", r"\frac{1}{2}", "3", "3.0", None, "7"]]
  correct = [[False, False, False, False, False, False]]
  calls = []

  def equal_many(pairs):
    calls.extend(pairs)
    return [float(eval(a.replace(r"\frac{1}{2}", "1/2"))) == float(eval(b.replace(r"\frac{1}{2}", "1/2")))
            for a, b in pairs]

  classes = passk.group_answers(answers, correct, equal_many, lambda s: s)
  assert classes == [[0, 0, 2, 2, -1, 5]]
  assert calls  # the grader was asked


def test_majority_tie_break_and_correct_class():
  # classes: 0 and 2 both appear twice in the first 4: the earliest-seen class (0) wins.
  classes, correct = [0, 2, 0, 2, 4], [False, True, False, True, True]
  assert passk.majority_correct(classes, correct, 4) is False
  assert passk.majority_correct([2, 0, 0, 2], [True, False, False, True], 4) is True
  assert passk.majority_correct([-1, -1], [False, False], 2) is False
  assert passk.maj_at_k([classes], [correct], 1).tolist() == [0.0]


def test_all_correct_answers_form_one_class_without_grader_calls():
  classes = passk.group_answers([["1/2", "0.5", "2"]], [[True, True, False]], lambda pairs: [False] * len(pairs),
                            lambda s: s)
  assert classes == [[0, 0, 2]]


def test_bootstrap_ci_and_breakdown():
  v = np.array([1.0] * 70 + [0.0] * 30)
  lo, hi = M.bootstrap_ci(v, num_resamples=2000, seed=0)
  assert lo < 0.7 < hi and hi - lo < 0.25
  assert M.bootstrap_ci(v, seed=3) == M.bootstrap_ci(v, seed=3)
  b = M.breakdown([1, 0, 1, 1], ["a", "a", "b", "b"])
  assert b == {"a": {"accuracy": 0.5, "count": 2}, "b": {"accuracy": 1.0, "count": 2}}


def test_plot_and_atomic_json(tmp_path):
  M.plot_pass_maj({"run": {"pass": {1: 0.3, 4: 0.6}, "maj": {1: 0.3, 4: 0.4}}}, str(tmp_path / "f.png"))
  assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  write_json_atomic(str(tmp_path / "r.json"), {"a": 1})
  assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "r.json"]
