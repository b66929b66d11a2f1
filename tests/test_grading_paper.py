"""The paper mode: DeepSeekMath's published extraction and math_equal rules, without their float overflow (issue #15
§3: 1e400 vs 2e400 and 10^{400} vs 2*10^{400} were accepted because both sides overflowed to inf)."""
import math

import pytest

from dsmath.grading import Grader, answers_equal_inprocess, extract_answer, grade_text_inprocess
from dsmath.grading.equivalence import isclose_exact, paper_number


@pytest.mark.parametrize("pred,gold", [("1e400", "2e400"), (r"10^{400}", r"2\cdot 10^{400}"), ("-1e400", "1e400"),
                                       (r"10^{400}", r"10^{400}+10^{392}"), ("1e-400", "1"),
                                       (r"2^{2000}", r"2^{2001}")])
def test_huge_numbers_are_not_equal(pred, gold):
  assert not answers_equal_inprocess(pred, gold, "paper")
  assert not grade_text_inprocess(f"So \\boxed{{{pred}}}.", gold, "paper")[0]


@pytest.mark.parametrize("pred,gold", [("1e400", "1.0e400"), (r"10^{400}", r"10^{400}"), ("1e400", "1.0000000001e400"),
                                       (r"10^{400}", r"10 \cdot 10^{399}"), ("1e-400", "0")])
def test_huge_numbers_equal_by_the_isclose_rule(pred, gold):
  # Python's isclose(a, b, abs_tol=1e-3) as the paper calls it (rel_tol 1e-9 by default), in exact arithmetic.
  assert answers_equal_inprocess(pred, gold, "paper")


def test_isclose_exact_matches_math_isclose_where_floats_are_finite():
  vals = ["0", "1", "-1", "0.0005", "0.0015", "1e-3", "123456.7", "123456.7000001", "1e12", "1.0000000005e12", "3.5",
          "3.5011", "-2.25", "1e300", "1.00000000099e300"]
  for a in vals:
    for b in vals:
      assert isclose_exact(paper_number(a), paper_number(b)) == math.isclose(float(a), float(b), abs_tol=1e-3), (a, b)


def test_paper_rules():
  same = [("50", "0.5"), ("0.5", "50"), ("3.1416", r"\pi"), ("[1,2)", "(1,2)"), ("2x-y=1", "y=2x-1"), ("x=5", "5"),
          (r"\frac{1}{3}", "0.333"), ("1,000", "1000"),
          (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{bmatrix}1\\2\end{bmatrix}"),
          (r"5\%", "0.05"), (r"\dfrac12", "0.5"), (r"\text{(B)}", "(B)")]
  diff = [("0.5", "0.6"), ("3", "-3"), ("x^2", "x^3"), ("(1, 2)", "(2, 1)"), ("7", ""), ("abc=5", "5"), ("1/3", "0.33")]
  assert all(answers_equal_inprocess(a, b, "paper") for a, b in same), [p for p in same if not
                                                                         answers_equal_inprocess(*p, "paper")]
  assert not any(answers_equal_inprocess(a, b, "paper") for a, b in diff), [p for p in diff if
                                                                             answers_equal_inprocess(*p, "paper")]


def test_paper_extraction_rules():
  assert extract_answer(r"The answer is 3, no wait \boxed{4}") == "4"  # the last \boxed wins over a phrase
  assert extract_answer(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
  assert extract_answer("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.") == r"\frac{1}{2}"
  assert extract_answer("So the answer is 1,000.") == "1,000"
  assert extract_answer("所以答案是 18。") == "18"
  assert extract_answer("She has 3 + 4 = 7 apples and buys 5, so 12 in all.") == "12"  # GSM8K: the last number
  assert grade_text_inprocess("She has 3 + 4 = 7 apples and buys 5, so 12 in all.", "12", "paper") == (True, "12")


def test_paper_mode_through_the_pool():
  with Grader(num_workers=1, timeout_s=10, mode="paper") as g:
    v = g.grade_many([r"\boxed{1e400}", r"so \boxed{10^{400}}", "The answer is 50.", r"\boxed{3}"],
                     ["2e400", r"2\cdot 10^{400}", "0.5", "300"])
  assert list(v) == [False, False, True, True]  # 3 vs 300: the percent rule (a False from the fast path is rechecked)
  assert v.answers == ["1e400", "10^{400}", "50", "3"]
