"""The in-process boxed-integer fast path never disagrees with the worker path: checked against math-verify's real
parse + verify (and the paper mode's rules) on generated texts around its edges."""
import logging
import random

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from dsmath.grading import boxed_integer_fast_path
from dsmath.grading.equivalence import paper_grade_text

logging.getLogger("math_verify").setLevel(logging.ERROR)
BOXED_FIRST = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

PREFIXES = ["", "7 + 5 = 12\n", "So we have $x = 3$ and $y = 4$. ", "The final answer is $6$. I hope it is correct.\n",
            "Final Answer: ", "The answer is 9. Wait, ", r"$$ 2 + 3 = ", r"Thus $\frac{1}{2} \cdot 10 = ",
            r"We find \boxed{8} first, then ", "答案是 ", "**Answer:** ", "It costs $5 and ", r"\[ ", r"\( ",
            "Let $a = 2$.\n\nHence ", r"so $\boxed{3}$ and ", "1,000 and 1 000 then ", r"\fbox{2} or "]
ANSWERS = ["12", "-12", "007", "0", "-0", "123456789012345", "5", "60"]
SUFFIXES = ["", ".", "$", "$.", " $$", r" \]", r" \)", "\n", " .", "%", " apples", "$ and $7$", "}", r" \text{cm}",
            ", so 13."]


def _math_verify(text: str, gold: str) -> bool:
  return bool(verify(parse("\\boxed{" + gold + "}", BOXED_FIRST), parse(text, BOXED_FIRST)))


def test_fast_path_agrees_with_math_verify_and_paper_mode():
  rng = random.Random(0)
  decided = 0
  for _ in range(500):
    ans = rng.choice(ANSWERS)
    gold = rng.choice([ans, ans.lstrip("-0") or "0", str(int(ans) + 1), str(int(ans) * 100), "5", "12"])
    text = rng.choice(PREFIXES) + "\\boxed{" + ans + "}" + rng.choice(SUFFIXES)
    fast = boxed_integer_fast_path(text, gold)
    if fast is None:
      continue
    decided += 1
    assert fast[0] == _math_verify(text, gold), (text, gold, fast)
    if fast[0]:
      assert paper_grade_text(text, gold, 5)[0], (text, gold)  # the paper mode only takes the fast path's True
  assert decided >= 100  # the fast path is used on ordinary RL outputs


def test_fast_path_declines_what_it_cannot_decide():
  for text, gold in [(r"\boxed{5}", "5.0"), (r"\boxed{2.5}", "2.5"), (r"\boxed{5}\%", "5"),
                     (r"\boxed{3} and \boxed{5}", "5"), (r"The final answer is \boxed{5}", "5"),
                     (r"\boxed{5} apples", "5"), (r"\boxed{1,000}", "1000"), ("no box 5", "5")]:
    assert boxed_integer_fast_path(text, gold) is None, text
  assert boxed_integer_fast_path(r"so \boxed{-12}.", "-12") == (True, "-12")
  assert boxed_integer_fast_path(r"so \boxed{12}$", "13") == (False, "12")
