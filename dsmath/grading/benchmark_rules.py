"""The MATH benchmark's answer normalisation, restricted to its sound rules: `benchmark_equal(a, b)`.

Hendrycks et al. grade MATH by string equality after `strip_string` (their `is_equiv`); lm-eval-harness
(hendrycks_math; minerva_math's `normalize_final_answer`, from Lewkowycz et al.'s appendix D) and Qwen2.5-Math's
evaluation `strip_string` add rules. This is an independent implementation of the rules of theirs that are sound
(they never make two different answers equal, reading a unit, degree, dollar or percent mark as the one the question
asks for), so that math_verify mode accepts what the benchmark accepts where math-verify's LaTeX reading refuses it
(`equivalence.mv_grade_text`: math-verify's verdict OR this one). Rules, in order (source in brackets):

- layout: line breaks, `\\!` `\\,` `\\;` `\\:` `\\ ` `\\quad` `~` spacing [Hendrycks: `\\!`; minerva: `\\;`, `\\ `,
  `,\\!`], `{,}` -> `,` [minerva], `\\left` / `\\right` / `\\big...` [Hendrycks], a doubled backslash before a command
  (`\\\\frac`, an escaping artefact) [Hendrycks turns every `\\\\` into `\\`; here only before a letter, so matrix row
  breaks survive], `\\dfrac` / `\\tfrac` -> `\\frac` [Hendrycks], `\\mbox` / `\\textrm` / `\\mathrm` -> `\\text`
  [minerva: mbox], `\\leq` / `\\geq` / `\\neq` -> `\\le` / `\\ge` / `\\ne`, bmatrix -> pmatrix [Qwen], all spaces
  [Hendrycks], after the TeX shorthand is read (below), so `\\frac ab` keeps its two arguments.
- decoration: `$` [Qwen], a trailing period [Qwen], `\\text{}` / `\\textbf{}` / `\\mathbf{}` / `\\boxed{}` wrappers
  kept as their content [minerva, Qwen].
- units: `^\\circ` / `^{\\circ}` / `°`, `\\$` and `\\%` / `%` [Hendrycks deletes them]; a trailing `\\text{ unit}`
  [Hendrycks: `\\text{ ` and what follows; Qwen: any trailing `\\text{...}`], a whole `\\text{5 cm}`, or a number
  followed by a unit word [minerva's list of removed words] is split off. Narrowed: these are kept as the answer's
  unit, and two answers that both carry one must carry the same (the references drop both, so `5\\text{ cm}` equals
  `5\\text{ m}` and `30^\\circ` equals `30\\%`; here each equals `30` / `5` but not the other); a unit word is only
  taken after a number and a space (minerva removes "cm", "ft", ... anywhere, "a " and "an " too; Qwen removes single
  letters such as "m", "s", "a" as words, which in math are variables).
- a short left-hand side, `k = 5` -> `5` [Hendrycks: at most 2 characters]. Narrowed: a name (a letter, then one letter
  or digit, or a subscript), and two answers that both name one must name the same (`k = 5` vs `x = 5` are unequal;
  the references equate them).
- numbers: `.5` -> `0.5` [Hendrycks], `1,000` -> `1000` when the commas group thousands [minerva: any digits and
  commas, so `1,22` -> `122`; here `1,22`, a decimal comma elsewhere, stays], `5.00` -> `5` [Qwen], `a/b` ->
  `\\frac{a}{b}` for integers [Hendrycks], `0.5` -> `\\frac{1}{2}` [Hendrycks].
- TeX shorthand: `\\frac34`, `\\frac1{72}`, `\\frac ab`, `\\sqrt3`, read with TeX's own argument rule (each argument is
  one token: a character, a command such as `\\pi`, or a braced group), so `\\frac9\\pi` is `\\frac{9}{\\pi}` and
  `\\sqrt34` is `\\sqrt{3}4` [Hendrycks reads one character, `\\frac9\\pi` -> `\\frac{9}{\\}pi`; Qwen's `\\sqrt(\\w+)`
  reads `\\sqrt34` as `\\sqrt{34}`].

Left out as unsound: minerva's `split("=")[-1]` (`x + y = 5` would equal `5`), its `\\overline{...}` unwrapping
(`0.\\overline{3}` would equal `0.3`), Qwen's "and" deletion and `j` -> `i`. Pure functions over short strings: an
answer over `MAX_CHARS` characters is not normalised (the comparison is then False), every regex is linear.
"""
from __future__ import annotations

import re
from typing import NamedTuple

MAX_CHARS = 1000


class Normal(NamedTuple):
  """An answer after normalisation: value (the compared string), unit ("" if none), lhs (the stripped short name, ""
  if none)."""
  value: str
  unit: str
  lhs: str


_ESCAPED_CMD = re.compile(r"\\\\(?=[A-Za-z])")
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DELIM_SIZE = re.compile(r"\\(?:left|right|[Bb]igg?[lr]?)(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\(?:[!,;: ]|q?quad(?![A-Za-z]))|~")  # not the second backslash of a row break
_TEXT_ALIASES = re.compile(r"\\(?:mbox|textrm|textnormal|mathrm)(?![A-Za-z])")
_SYNONYMS = ((re.compile(r"\\leq(?![A-Za-z])"), r"\\le"), (re.compile(r"\\geq(?![A-Za-z])"), r"\\ge"),
             (re.compile(r"\\neq(?![A-Za-z])"), r"\\ne"), (re.compile(r"bmatrix"), "pmatrix"))
# Marks the references delete, kept here as units: degrees, dollars, percent.
_MARKS = (("degree", re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|°")),
          ("dollar", re.compile(r"\\\$")), ("percent", re.compile(r"\\?%")))
_EMPTY_TEXT = re.compile(r"\\text\s*\{\s*\}")
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathbf|mathit|emph|boxed|fbox)\s*\{([^{}]*)\}")
_CMD = re.compile(r"\\(?:[A-Za-z]+|.)", re.DOTALL)
_ARITY = {"\\frac": 2, "\\sqrt": 1}
_SHORT_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_\{?[A-Za-z0-9]+\}?)?")
_RELATION = re.compile(r"\\(?:le|ge|ne|lt|gt|in|approx|equiv)(?![A-Za-z])|[<>]")

# A trailing unit: `\text{ cm}` / `\text{cm}^2` after a value (the unit is letters, spaces and dots).
_UNIT_TEXT = re.compile(r"\\text\{\s*([A-Za-z][A-Za-z .]{0,40})\}\s*(\^\s*\{?\s*[23]\s*\}?)?$")
# A whole `\text{5 cm}`: a number and its unit in text mode.
_TEXT_NUMBER_UNIT = re.compile(r"\\text\{\s*(-?[\d.,/]+)\s+([A-Za-z][A-Za-z .]{0,40})\}$")
# A number, a space and a unit word (minerva's removed expressions that are units, and their relatives).
_UNIT_WORDS = ("units", "unit", "square units", "cubic units", "cm", "mm", "km", "meters", "meter", "metres", "inches",
               "inch", "feet", "foot", "ft", "yards", "miles", "mph", "hours", "hour", "minutes", "seconds", "days",
               "degrees", "dollars", "cents", "pounds", "ounces", "grams", "kg", "liters", "points", "ways", "digits",
               "students", "people", "edges", "meals")
_NUMBER_UNIT = re.compile(r"(?<=\d)\s+(" + "|".join(sorted(_UNIT_WORDS, key=len, reverse=True)) + r")$")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_BARE_DECIMAL = re.compile(r"(?<![\d}])\.(\d)")
_TRAILING_ZEROS = re.compile(r"(-?\d+)\.0+")
_INT_SLASH = re.compile(r"(-?)(\d+)/(\d+)")


def _tex_argument(s: str, j: int) -> tuple[str | None, int]:
  """TeX's reading of one macro argument at s[j:]: spaces skipped, then a braced group (its content), a command or
  one character. (None, j) at the end of the string, before a closing brace or an unbalanced group."""
  while j < len(s) and s[j] == " ":
    j += 1
  if j >= len(s) or s[j] == "}":
    return None, j
  if s[j] == "{":
    depth, k = 0, j
    while k < len(s):
      c = s[k]
      if c == "\\":
        k += 2
        continue
      depth += (c == "{") - (c == "}")
      if depth == 0:
        return s[j + 1:k], k + 1
      k += 1
    return None, j
  if s[j] == "\\":
    m = _CMD.match(s, j)
    return m.group(), m.end()
  return s[j], j + 1


def expand_shorthand(s: str) -> str:
  """`\\frac34` -> `\\frac{3}{4}`, `\\frac ab` -> `\\frac{a}{b}`, `\\frac9\\pi` -> `\\frac{9}{\\pi}`, `\\sqrt3` ->
  `\\sqrt{3}`, `\\sqrt[3]x` -> `\\sqrt[3]{x}`: every argument of \\frac and \\sqrt braced, read as TeX reads it. A
  string whose shorthand TeX could not read (a missing argument) is returned unchanged."""
  out, i = [], 0
  while i < len(s):
    if s[i] != "\\":
      out.append(s[i])
      i += 1
      continue
    cmd = _CMD.match(s, i).group()
    i += len(cmd)
    out.append(cmd)
    arity = _ARITY.get(cmd)
    if arity is None:
      continue
    if cmd == "\\sqrt":
      k = i
      while k < len(s) and s[k] == " ":
        k += 1
      if k < len(s) and s[k] == "[" and "]" in s[k:]:
        end = s.index("]", k) + 1
        out.append(s[k:end])
        i = end
    for _ in range(arity):
      arg, i = _tex_argument(s, i)
      if arg is None:
        return s
      out.append("{" + expand_shorthand(arg) + "}")
  return "".join(out)


def _split_unit(s: str) -> tuple[str, str]:
  """(value, unit) of an answer whose spacing and decoration are gone; unit "" if it has none."""
  m = _TEXT_NUMBER_UNIT.fullmatch(s.strip())
  if m:
    return m.group(1), m.group(2)
  m = _UNIT_TEXT.search(s)
  if m and s[:m.start()].strip():
    return s[:m.start()], m.group(1) + (m.group(2) or "")
  m = _NUMBER_UNIT.search(s)
  if m:
    return s[:m.start()], m.group(1)
  return s, ""


def _singular(word: str) -> str:
  """A unit word in one spelling: "inches" -> "inch", "dollars" -> "dollar", "cm^2" -> "cm^2"."""
  word = re.sub(r"[.{}]", "", word)
  if re.search(r"(?:ch|sh|x)es$", word):
    return word[:-2]
  return word[:-1] if len(word) > 2 and word.endswith("s") and not word.endswith("ss") else word


def normalize(answer: str) -> Normal | None:
  """The answer as the benchmark's rules compare it (module docstring); None for a non-string, an empty or an
  over-long answer."""
  if not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_CHARS:
    return None
  s = answer.replace("\n", " ").strip()
  s = _ESCAPED_CMD.sub(r"\\", s)
  s = _FRAC_VARIANT.sub(r"\\frac", s)
  s = _DELIM_SIZE.sub("", s)
  s = _SPACING.sub(" ", s).replace("{,}", ",")
  s = _TEXT_ALIASES.sub(r"\\text", s)
  for pattern, repl in _SYNONYMS:
    s = pattern.sub(repl, s)
  units = []  # the references drop these marks; here they are units (30^\\circ vs 30\\% differ, each equals 30)
  for mark, pattern in _MARKS:
    if pattern.search(s):
      units.append(mark)
      s = pattern.sub("", s)
  s = s.replace("$", "")
  s = _EMPTY_TEXT.sub("", s).strip().rstrip(".").strip()
  lhs = ""
  if s.count("=") == 1 and not _RELATION.search(s):
    left, right = (p.strip() for p in s.split("="))
    if _SHORT_NAME.fullmatch(left) and right:
      lhs, s = left, right
  s, unit = _split_unit(s)
  if unit:
    units.append(unit)
  while True:  # innermost wrappers first: \text{\textbf{x}}
    t = _WRAPPER.sub(r"\1", s)
    if t == s:
      break
    s = t
  s = expand_shorthand(s)
  s = re.sub(r"\s+", "", s)
  s = _BARE_DECIMAL.sub(r"0.\1", s).rstrip(".")
  if _THOUSANDS.fullmatch(s):
    s = s.replace(",", "")
  m = _TRAILING_ZEROS.fullmatch(s)
  if m:
    s = m.group(1)
  m = _INT_SLASH.fullmatch(s)
  if m:
    s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
  if s == "0.5":
    s = "\\frac{1}{2}"
  return Normal(s, " ".join(sorted({_singular(w) for u in units for w in u.lower().split()})), lhs)


def benchmark_equal(a: str | None, b: str | None) -> bool:
  """Whether two answers are equal by the benchmark's sound rules: the same normalised value, the same unit where
  both carry one, the same short name where both name one."""
  x, y = normalize(a), normalize(b)
  if x is None or y is None or not x.value:
    return False
  return (x.value == y.value and (not x.unit or not y.unit or x.unit == y.unit)
          and (not x.lhs or not y.lhs or x.lhs == y.lhs))


__all__ = ["MAX_CHARS", "Normal", "benchmark_equal", "expand_shorthand", "normalize"]
