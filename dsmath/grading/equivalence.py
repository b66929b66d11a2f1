"""The two grading modes: is a model's text (or an extracted answer) equivalent to the gold answer?

"math_verify" (default): math-verify 0.9.0 end to end, then the MATH benchmark's own normalisation where math-verify
  refuses. The prediction text is parsed by math-verify's own extraction (`PRED_EXTRACTION`: LaTeX with \\boxed{}
  ranked first, then LaTeX environments and answer phrases, then plain expressions and numbers, e.g. "$\\frac13$",
  "k = 1/3", "1 000", "1,22", "[0,1)"); the gold answer, a bare answer string from a benchmark, is parsed as
  `\\boxed{gold}` (`GOLD_EXTRACTION`); then `verify(gold, pred)`, which compares sympy numbers, expressions, sets,
  intervals, matrices and relations with 6-digit float rounding. Where that verdict is False, the answer is still
  right if the benchmark's sound string rules (`benchmark_rules.benchmark_equal`: Hendrycks et al.'s strip_string as
  lm-eval and Qwen2.5-Math extend it, e.g. `\\frac ab`, `12.5\\%` vs `12.5`, `\\text{2 hours}` vs `2`) equate the
  gold with math-verify's extracted answer or, in a text with at most one box, with the answer DeepSeekMath's rules
  extract (`answers.extract_answer` without the last-number fallback: the box, else an "answer is" phrase). So the
  verdict is math-verify's own `verify(parse(...), parse(...))` OR the benchmark's; several boxes are still read
  as math-verify reads them (boxes close together as one set), not as the benchmark's last box.
"paper": DeepSeekMath's published rules (their evaluation/eval/eval_utils.py `math_equal`, re-implemented): the
  answer is extracted by `answers.extract_answer` (last \\boxed{}, "the answer is", last number); string match after
  normalisation; numbers accepted if the prediction is close to the reference, reference/100 or reference*100
  (percent confusion) with Python's isclose rule (abs 1e-3, rel 1e-9) evaluated in exact decimal arithmetic, so
  1e400 and 2e400 differ (the published float code overflows both to inf and accepts); tuples/intervals elementwise
  ignoring bracket types; pmatrix/bmatrix elementwise; "x = 5" vs "5" when the left side is a short name; equations
  as lhs-rhs up to sign; else sympy `simplify(a - b) == 0` or numeric closeness by the same isclose rule.
  Where the modes differ (paper accepts, math-verify rejects): 0.5 vs 50 (percent rule); 3.1416 vs \\pi (abs 1e-3);
  [1,2) vs (1,2) (brackets ignored); 2x-y=1 vs y=2x-1 (equations up to sign).

These functions do no time limiting of their own beyond math-verify's signal alarms (`soft_timeout_s`); run them in a
`pool.Grader` worker, which kills an answer that overruns its hard limit.
"""
from __future__ import annotations

import decimal
import functools
import logging
import re
from typing import Any, Callable

from dsmath.grading.answers import extract_answer, normalize_answer
from dsmath.grading.benchmark_rules import benchmark_equal

MODES = ("math_verify", "paper")
soft_timeouts = 0  # how many soft alarms fired in this process (math-verify's and the paper mode's own)


class _SoftTimeoutCounter(logging.Handler):
  """Counts math-verify's "Timeout during parsing/comparison" warnings (its signal alarms fired)."""

  def emit(self, record: logging.LogRecord) -> None:
    global soft_timeouts
    if str(record.msg).startswith("Timeout during"):
      soft_timeouts += 1


def count_soft_timeouts() -> None:
  """Counts math-verify's alarm timeouts in `soft_timeouts` and keeps its warnings off stderr (in a worker)."""
  log = logging.getLogger("math_verify")
  if not any(isinstance(h, _SoftTimeoutCounter) for h in log.handlers):
    log.addHandler(_SoftTimeoutCounter(logging.WARNING))
  log.setLevel(logging.WARNING)
  log.propagate = False


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"unknown grading mode {mode!r}; choose from {sorted(MODES)}")
  return mode


# ---------------------------------------------------------------------------------------------------------------------
# math_verify mode.

@functools.lru_cache(maxsize=1)
def _mv_configs():
  from math_verify import ExprExtractionConfig, LatexExtractionConfig
  pred = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
  gold = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
  return pred, gold


def pred_extraction():
  """math-verify extraction targets for model text: boxed first, then LaTeX, then plain expressions/numbers."""
  return _mv_configs()[0]


def gold_extraction():
  """math-verify extraction targets for a gold answer, applied to `\\boxed{gold}` (see `wrap_gold`)."""
  return _mv_configs()[1]


def wrap_gold(gold: str) -> str:
  """A bare benchmark answer ("[0,1)", "\\frac{1}{3}", "1,000") as text math-verify reads whole: `\\boxed{gold}`.

  Without the box math-verify would look for LaTeX delimiters or a number in it ("[0,1)" -> nothing, "x \\geq 5" -> 5).
  A gold that already has a \\boxed{} is kept as is.
  """
  gold = str(gold).strip()
  return gold if "\\boxed" in gold else "\\boxed{" + gold + "}"


def _mv_answer_string(parsed: list) -> str | None:
  """The extracted answer as math-verify reports it (its normalised LaTeX string), for records and Maj@k keys."""
  if not parsed:
    return None
  last = parsed[-1]
  return last if isinstance(last, str) else str(last)


def mv_parse_prediction(text: str, soft_timeout_s: int = 5) -> list:
  from math_verify import parse
  return parse(text, pred_extraction(), parsing_timeout=soft_timeout_s)


def mv_parse_gold(gold: str, soft_timeout_s: int = 5) -> list:
  from math_verify import parse
  return parse(wrap_gold(gold), gold_extraction(), parsing_timeout=soft_timeout_s)


def _benchmark_candidates(text: str, mv_answer: str | None) -> list[str]:
  """The answers the benchmark rules compare with the gold: math-verify's extracted answer, and in a text with at most
  one box the box or "answer is" phrase (math-verify may have read past a box it could not parse)."""
  found = [mv_answer] if mv_answer else []
  if text.count("\\boxed") + text.count("\\fbox") <= 1:
    rule = extract_answer(text, fallback_last_number=False)
    if rule and rule != mv_answer:
      found.append(rule)
  return found


def mv_grade_text(text: str, gold: str, soft_timeout_s: int = 5) -> tuple[bool, str | None]:
  """(verdict, extracted answer) for model text against a bare gold answer: math-verify's parse + verify, else the
  benchmark's rules (module docstring)."""
  from math_verify import verify
  pred = mv_parse_prediction(text, soft_timeout_s)
  answer = _mv_answer_string(pred)
  if pred:
    g = mv_parse_gold(gold, soft_timeout_s)
    if g and verify(g, pred, timeout_seconds=soft_timeout_s):
      return True, answer
  for candidate in _benchmark_candidates(text, answer):
    if benchmark_equal(candidate, gold):
      return True, answer or candidate
  return False, answer


def mv_answers_equal(pred: str, gold: str, soft_timeout_s: int = 5) -> bool:
  """Two already-extracted answers (e.g. math-verify's strings, or a program's output), both read as gold answers;
  else the benchmark's rules."""
  from math_verify import verify
  p = mv_parse_gold(pred, soft_timeout_s)
  g = mv_parse_gold(gold, soft_timeout_s)
  if p and g and verify(g, p, timeout_seconds=soft_timeout_s):
    return True
  return benchmark_equal(pred, gold)


# ---------------------------------------------------------------------------------------------------------------------
# paper mode.

def _paper_strip(s: str) -> str:
  s = normalize_answer(s)
  s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
  s = re.sub(r"\\mbox\{([^{}]*)\}", r"\1", s)
  s = s.replace("\\%", "%").replace("\\percent", "%")
  s = re.sub(r"^\\frac(\d)(\d)$", r"\\frac{\1}{\2}", s)
  s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)
  if s.startswith("."):
    s = "0" + s
  return s


# Decimal arithmetic with an unbounded exponent range: 1e400 stays 1e400 (a float overflows to inf, and inf == inf).
_DEC = decimal.Context(prec=60, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[decimal.InvalidOperation])
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}|(-?)(\d+)/(\d+)")


def paper_number(s: str) -> decimal.Decimal | None:
  """A number as the paper's `parse_digits` reads it (commas dropped, trailing % divides by 100, also a/b and
  \\frac{a}{b}), as an exact-exponent Decimal; None if it is not a plain number."""
  s = s.replace(",", "")
  pct = s.endswith("%")
  if pct:
    s = s[:-1].rstrip("\\")
  if _DECIMAL_RE.fullmatch(s):
    v = _DEC.create_decimal(s)
  else:
    m = _FRAC_RE.fullmatch(s)
    if not m:
      return None
    sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5),
                                                                                           m.group(6))
    if int(den) == 0:
      return None
    v = _DEC.divide(_DEC.create_decimal(num), _DEC.create_decimal(den))
    if sign:
      v = _DEC.minus(v)
  return _DEC.divide(v, 100) if pct else v


def isclose_exact(a, b, rel_tol=1e-9, abs_tol=1e-3) -> bool:
  """Python's math.isclose rule, |a-b| <= max(rel_tol*max(|a|,|b|), abs_tol), for Decimals without overflow."""
  diff = abs(_DEC.subtract(a, b))
  bound = max(_DEC.multiply(_DEC.create_decimal(repr(rel_tol)), max(abs(a), abs(b))),
              _DEC.create_decimal(repr(abs_tol)))
  return diff <= bound


def _split_top(s: str, sep: str) -> list[str]:
  parts, depth, cur = [], 0, []
  for c in s:
    depth += (c in "([{") - (c in ")]}")
    if c == sep and depth == 0:
      parts.append("".join(cur))
      cur = []
    else:
      cur.append(c)
  parts.append("".join(cur))
  return parts


def _to_sympy(s: str, soft_timeout_s: int):
  from math_verify import parse
  got = parse("$" + s + "$", parsing_timeout=soft_timeout_s)
  return got[0] if got else None


def _sympy_isclose(x, y) -> bool:
  """isclose (abs 1e-3, rel 1e-9) on sympy values: the difference is formed symbolically and evaluated with sympy's
  arbitrary-exponent floats, so 10^400 vs 2*10^400 differ instead of overflowing to inf == inf."""
  import sympy
  d = sympy.N(x - y, 30)
  if not d.is_number:
    return False
  ax, ay = abs(sympy.N(x, 30)), abs(sympy.N(y, 30))
  return bool(abs(d) <= max(sympy.Float("1e-9") * max(ax, ay), sympy.Float("1e-3")))


def _paper_symbolic(a: str, b: str, soft_timeout_s: int) -> bool:
  from math_verify.errors import TimeoutException
  from math_verify.utils import timeout
  x, y = _to_sympy(a, soft_timeout_s), _to_sympy(b, soft_timeout_s)
  if x is None or y is None or isinstance(x, str) or isinstance(y, str):
    return False
  try:  # the paper ran this in a subprocess with a 1 s limit; a signal alarm stops Python-level sympy work here
    return timeout(soft_timeout_s)(_sympy_equal)(x, y)
  except TimeoutException:
    global soft_timeouts
    soft_timeouts += 1
    return False


def _sympy_equal(x, y) -> bool:
  import sympy
  try:
    if sympy.simplify(x - y) == 0:
      return True
  except Exception:  # sympy raises anything on mismatched types (sets minus numbers, ...)
    pass
  try:
    return _sympy_isclose(x, y)
  except Exception:  # not numbers (symbols, sets, relations)
    return False


def paper_answers_equal(pred: str, gold: str, soft_timeout_s: int = 5, depth: int = 0) -> bool:
  """DeepSeekMath's `math_equal(pred, gold)` on two extracted answers (see the module docstring)."""
  p, g = _paper_strip(pred), _paper_strip(gold)
  if p == g:
    return True
  pn, gn = paper_number(p), paper_number(g)
  if pn is not None and gn is not None:
    return any(isclose_exact(pn, r) for r in (gn, _DEC.divide(gn, 100), _DEC.multiply(gn, 100)))
  if not p:
    return False
  if depth < 3:
    br = re.compile(r"^[(\[].*[)\]]$")
    if br.match(p) and br.match(g):
      pp, gp = _split_top(p[1:-1], ","), _split_top(g[1:-1], ",")
      if len(pp) == len(gp) and all(paper_answers_equal(a, b, soft_timeout_s, depth + 1) for a, b in zip(pp, gp)):
        return True
    mat = re.compile(r"^\\begin\{[pb]matrix\}(.*)\\end\{[pb]matrix\}$")
    pm, gm = mat.match(p), mat.match(g)
    if pm and gm:
      prow = [r for r in pm.group(1).split("\\\\") if r]
      grow = [r for r in gm.group(1).split("\\\\") if r]
      if len(prow) == len(grow) and all(
          len(a.split("&")) == len(b.split("&")) and
          all(paper_answers_equal(x, y, soft_timeout_s, depth + 1) for x, y in zip(a.split("&"), b.split("&")))
          for a, b in zip(prow, grow)):
        return True
    if p.count("=") == 1 and g.count("=") == 1:
      pl, pr = p.split("=")
      gl, gr = g.split("=")
      d1, d2 = f"{pl}-({pr})", f"{gl}-({gr})"
      if _paper_symbolic(d1, d2, soft_timeout_s) or _paper_symbolic(f"-({d1})", d2, soft_timeout_s):
        return True
    elif p.count("=") == 1 and len(p.split("=")[0]) <= 2 and "=" not in g:
      return paper_answers_equal(p.split("=")[1], g, soft_timeout_s, depth + 1)
    elif g.count("=") == 1 and len(g.split("=")[0]) <= 2 and "=" not in p:
      return paper_answers_equal(p, g.split("=")[1], soft_timeout_s, depth + 1)
  return _paper_symbolic(p, g, soft_timeout_s)


def paper_grade_text(text: str, gold: str, soft_timeout_s: int = 5) -> tuple[bool, str | None]:
  """(verdict, extracted answer) by DeepSeekMath's extraction and `math_equal`."""
  pred = extract_answer(text)
  if pred is None:
    return False, None
  return paper_answers_equal(pred, gold, soft_timeout_s), pred


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch by mode (what a worker runs for one item).

_TEXT: dict[str, Callable[[str, str, int], tuple[bool, str | None]]] = {"math_verify": mv_grade_text,
                                                                         "paper": paper_grade_text}
_ANSWER: dict[str, Callable[[str, str, int], bool]] = {"math_verify": mv_answers_equal, "paper": paper_answers_equal}


def grade_text_inprocess(text: str | None, gold: str | None, mode: str = "math_verify",
                         soft_timeout_s: int = 5) -> tuple[bool, str | None]:
  """(verdict, extracted answer) in this process, with no hard time limit (use `pool.Grader` for that)."""
  check_mode(mode)
  if text is None or gold is None:
    return False, None
  try:
    return _TEXT[mode](str(text), str(gold), soft_timeout_s)
  except Exception:  # a crash on odd input means "not shown equal"
    return False, None


def answers_equal_inprocess(pred: str | None, gold: str | None, mode: str = "math_verify",
                            soft_timeout_s: int = 5) -> bool:
  """Equivalence of two extracted answers in this process, with no hard time limit (use `pool.Grader` for that)."""
  check_mode(mode)
  if pred is None or gold is None:
    return False
  try:
    return bool(_ANSWER[mode](str(pred), str(gold), soft_timeout_s))
  except Exception:  # a crash on odd input means "not shown equal"
    return False


def run_item(kind: str, a: Any, b: Any, mode: str, soft_timeout_s: int) -> tuple[bool, str | None]:
  """One grading item as a worker runs it: kind "text" (a: model text) or "answer" (a: extracted answer)."""
  if kind == "text":
    return grade_text_inprocess(a, b, mode, soft_timeout_s)
  return answers_equal_inprocess(a, b, mode, soft_timeout_s), a


__all__ = ["MODES", "check_mode", "count_soft_timeouts", "pred_extraction", "gold_extraction", "wrap_gold",
           "mv_parse_prediction", "mv_parse_gold", "mv_grade_text", "mv_answers_equal", "paper_number",
           "isclose_exact", "paper_answers_equal", "paper_grade_text", "grade_text_inprocess",
           "answers_equal_inprocess", "run_item"]
