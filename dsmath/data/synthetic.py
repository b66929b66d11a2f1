"""A GSM8K-style synthetic task that tiny models can learn on a CPU, with a rule-based step checker.

A problem is a short story about one quantity ("Ann has 7 pens. She buys 3 boxes of 4 pens. ...") and its solution is
one checkable equation per line ending in a final `\\boxed{}` answer:

  7 + 3 = 10           (style "equations", the compact default for tiny models)
  Ann buys 3 more pens, so she has 7 + 3 = 10 pens.   (style "words", closer to GSM8K)

Every step is an equation `a op b = c` over non-negative integers, so `check_steps` can verify each step's arithmetic
(and, given the question, that its operands come from the question or from earlier results): a rule-based process
reward for testing process supervision without a learned PRM. Train/test splits are disjoint by construction: a
question belongs to the split chosen by a stable hash of its text, whatever the seed.
"""
import dataclasses
import hashlib
import random
import re
from typing import Sequence

NAMES = ("Ann", "Tom", "Mia", "Sam", "Eva", "Ben")
PRONOUNS = {"Ann": "she", "Tom": "he", "Mia": "she", "Sam": "he", "Eva": "she", "Ben": "he"}
ITEMS = ("apples", "pens", "cards", "eggs", "books", "coins")
OPS = ("+", "-", "*", "/", "box")  # "box" = buys k boxes of m (a product then a sum: two equations)
ANSWER_PREFIX = "\\boxed{"
PROMPT_TEMPLATE = "{question}\n"  # the completion (solution) starts right after the question's newline

_EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (-?\d+)")
_BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


@dataclasses.dataclass(frozen=True)
class Difficulty:
  """How hard problems are: number of story operations, operand sizes, allowed operations."""
  min_steps: int = 2
  max_steps: int = 3
  max_number: int = 20  # operands drawn from [1, max_number] (multipliers and divisors from [2, max_factor])
  max_factor: int = 5
  max_value: int = 500  # running totals stay within [0, max_value]
  ops: tuple[str, ...] = ("+", "-", "*", "box")
  style: str = "equations"  # "equations" or "words"

  def __post_init__(self):
    if not 1 <= self.min_steps <= self.max_steps:
      raise ValueError(f"synthetic difficulty: need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
    if self.max_number < 2 or self.max_factor < 2:
      raise ValueError(f"synthetic difficulty: max_number and max_factor must be >= 2, got {self.max_number}, "
                       f"{self.max_factor}")
    unknown = sorted(set(self.ops) - set(OPS))
    if unknown or not self.ops:
      raise ValueError(f"synthetic difficulty.ops: unknown {unknown}; valid {OPS}")
    if self.style not in ("equations", "words"):
      raise ValueError(f"synthetic difficulty.style must be 'equations' or 'words', got {self.style!r}")


@dataclasses.dataclass(frozen=True)
class Problem:
  question: str
  solution: str  # steps separated by "\n", last line `\boxed{answer}`
  answer: str

  @property
  def prompt(self) -> str:
    return PROMPT_TEMPLATE.format(question=self.question)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _step_text(style: str, name: str, item: str, sentence_tail: str, eq: str, result: int) -> str:
  if style == "equations":
    return eq
  return f"{name} {sentence_tail}, so {PRONOUNS[name]} has {eq} {item}."


def difficulty_from_dict(d) -> Difficulty:
  """A Difficulty from a config mapping (lists become the tuples the dataclass holds)."""
  return Difficulty(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(d).items()})


def generate_problem(rng: random.Random, difficulty: Difficulty = Difficulty()) -> Problem:
  """One random problem; every intermediate value stays in [0, difficulty.max_value]."""
  d = difficulty
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  pron = PRONOUNS[name].capitalize()
  value = rng.randint(1, d.max_number)
  sentences, steps = [f"{name} has {value} {item}."], []
  for _ in range(rng.randint(d.min_steps, d.max_steps)):
    choices = [op for op in d.ops if _feasible(op, value, d)]
    op = rng.choice(choices)
    if op == "+":
      b = rng.randint(1, min(d.max_number, d.max_value - value))
      new = value + b
      sentences.append(f"{pron} buys {b} more.")
      steps.append(_step_text(d.style, name, item, f"buys {b} more", f"{value} + {b} = {new}", new))
    elif op == "-":
      b = rng.randint(1, min(d.max_number, value))
      new = value - b
      sentences.append(f"{pron} gives away {b}.")
      steps.append(_step_text(d.style, name, item, f"gives away {b}", f"{value} - {b} = {new}", new))
    elif op == "*":
      k = rng.randint(2, min(d.max_factor, d.max_value // max(value, 1)))
      new = value * k
      sentences.append(f"{pron} gets {k} times as many.")
      steps.append(_step_text(d.style, name, item, f"gets {k} times as many", f"{value} * {k} = {new}", new))
    elif op == "/":
      k = rng.choice([k for k in range(2, d.max_factor + 1) if value % k == 0])
      new = value // k
      sentences.append(f"{pron} keeps 1 of {k} equal parts.")
      steps.append(_step_text(d.style, name, item, f"keeps 1 of {k} equal parts", f"{value} / {k} = {new}", new))
    else:  # box: k boxes of m, two equations
      k = rng.randint(2, d.max_factor)
      m = rng.randint(1, min(d.max_number, (d.max_value - value) // k))
      prod, new = k * m, value + k * m
      sentences.append(f"{pron} buys {k} boxes of {m}.")
      if d.style == "equations":
        steps += [f"{k} * {m} = {prod}", f"{value} + {prod} = {new}"]
      else:
        steps += [f"{k} boxes of {m} {item} are {k} * {m} = {prod} {item}.",
                  f"{name} now has {value} + {prod} = {new} {item}."]
    value = new
  sentences.append(f"How many {item} does {name} have?")
  steps.append(f"{ANSWER_PREFIX}{value}}}")
  return Problem(question=" ".join(sentences), solution="\n".join(steps), answer=str(value))


def _feasible(op: str, value: int, d: Difficulty) -> bool:
  if op == "+":
    return value < d.max_value
  if op == "-":
    return value >= 1
  if op == "*":
    return 2 * value <= d.max_value
  if op == "/":
    return value >= 2 and any(value % k == 0 for k in range(2, d.max_factor + 1))
  return value + 2 <= d.max_value  # box: at least 2 boxes of 1


def split_of(question: str, test_fraction: float, validation_fraction: float = 0.0) -> str:
  """'train', 'validation' or 'test' from a stable hash of the question text (so splits never overlap, whatever the
  seed): the first test_fraction of the hash range is test, the next validation_fraction validation."""
  h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "big") % 10_000
  if h < round(test_fraction * 10_000):
    return "test"
  return "validation" if h < round((test_fraction + validation_fraction) * 10_000) else "train"


SPLITS = ("train", "validation", "test")


def make_split(split: str, n: int, seed: int = 0, difficulty: Difficulty = Difficulty(),
               test_fraction: float = 0.2, patience: int = 2000,
               validation_fraction: float = 0.0) -> list[Problem]:
  """`n` distinct problems of `split` ("train", "validation" or "test"), deterministic in `seed`; the splits are
  disjoint. Settings are chosen on validation, numbers reported on test; validation_fraction 0 leaves train and test
  exactly as before validation existed."""
  if split not in SPLITS:
    raise ValueError(f"synthetic split must be one of {SPLITS}, got {split!r}")
  if not 0.0 < test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0 - test_fraction:
    raise ValueError(f"synthetic test_fraction must be in (0, 1) and validation_fraction in [0, 1 - test_fraction), "
                     f"got {test_fraction}, {validation_fraction}")
  if split == "validation" and not validation_fraction:
    raise ValueError("synthetic split 'validation' needs validation_fraction > 0")
  rng = random.Random(f"{seed}-{split}")
  seen, out, misses = set(), [], 0
  while len(out) < n and misses < patience:  # give up after `patience` draws in a row bring nothing new
    p = generate_problem(rng, difficulty)
    if p.question in seen or split_of(p.question, test_fraction, validation_fraction) != split:
      misses += 1
      continue
    misses = 0
    seen.add(p.question)
    out.append(p)
  if len(out) < n:
    raise ValueError(f"synthetic make_split: only {len(out)} distinct {split} problems of {n} requested for "
                     f"{difficulty}; raise max_number/max_steps or ask for fewer")
  return out


# ----------------------------------------------------------------------------------------------------------------------
# A noisy teacher: who writes the SFT solutions
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A careless teacher writing the SFT solutions: on a step whose addition carries (or whose subtraction borrows) it
  drops the carry (adds each digit column mod 10: 7 + 5 = 2) or takes the smaller digit from the larger (13 - 5 = 12)
  with probability `slip`, the classic column-arithmetic slips, and carries on from the wrong value. The answer key
  (Problem.answer) stays right. A model fine-tuned on such solutions learns the slips as a habit it can compute past:
  what RL on the rule reward can remove (the "misalignment" of SFT models the paper cites, Wang et al. 2023a)."""
  slip: float = 0.0

  def __post_init__(self):
    if not 0.0 <= self.slip <= 1.0:
      raise ValueError(f"teacher slip must be in [0, 1], got {self.slip}")


def _digits(x: int) -> list[int]:
  return [int(c) for c in reversed(str(x))]


def column_sum_without_carry(a: int, b: int) -> int:
  da, db = _digits(a), _digits(b)
  n = max(len(da), len(db))
  da, db = da + [0] * (n - len(da)), db + [0] * (n - len(db))
  return int("".join(str((x + y) % 10) for x, y in reversed(list(zip(da, db)))))


def column_difference_without_borrow(a: int, b: int) -> int:
  da, db = _digits(a), _digits(b)
  db = db + [0] * (len(da) - len(db))
  return int("".join(str(abs(x - y)) for x, y in reversed(list(zip(da, db)))))


def slipped(a: int, op: str, b: int) -> int | None:
  """The teacher's slip on `a op b`, or None where the column arithmetic has no carry / borrow to get wrong."""
  if op == "+":
    wrong = column_sum_without_carry(a, b)
  elif op == "-" and a >= b:
    wrong = column_difference_without_borrow(a, b)
  else:
    return None
  right = a + b if op == "+" else a - b
  return wrong if wrong != right else None


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a // b if b else 0}


def teacher_solution(problem: Problem, teacher: Teacher, rng: random.Random) -> str:
  """`problem`'s solution as `teacher` writes it: each step's equation recomputed from the teacher's own earlier
  results (a slip propagates), with a slip where a carry or borrow is due, with probability teacher.slip."""
  lines = problem.solution.split("\n")
  running_true, running = None, None  # the story's running value, right and as the teacher has it
  product_true, product = None, None  # the product of a "box" step, which the next step adds
  out = []
  for line in lines:
    m = _EQUATION.search(line)
    if m is None:
      boxed = _BOXED.search(line)
      out.append(line if boxed is None or running is None else line.replace(boxed.group(0), f"\\boxed{{{running}}}"))
      continue
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    a2 = running if a == running_true and running is not None else a
    b2 = product if (product_true is not None and b == product_true) else b
    result = _OPS[op](a2, b2)
    wrong = slipped(a2, op, b2)
    if wrong is not None and rng.random() < teacher.slip:
      result = wrong
    out.append(line[:m.start()] + f"{a2} {op} {b2} = {result}" + line[m.end():])
    if op == "*" and a != running_true:  # a box step's product k * m, added by the next equation
      product_true, product = c, result
    else:
      running_true, running, product_true, product = c, result, None, None
  return "\n".join(out)


def alphabet(difficulty: Difficulty = Difficulty()) -> str:
  """Every character the task can produce (for a character-level vocabulary), sorted."""
  chars = set("0123456789 .,?+-*/=\n{}\\boxed") | set("".join(NAMES + ITEMS)) | set("".join(PRONOUNS.values()))
  for text in ("has buys more gives away gets times as many keeps of equal parts boxes How many does have so now are",
               "She He"):
    chars |= set(text)
  return "".join(sorted(chars))


# ----------------------------------------------------------------------------------------------------------------------
# Rule-based step checker
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepCheck:
  """Per-step verdicts for one solution text.

  steps: the step texts (separator removed); correct: whether each step is right; ends: each step's exclusive end
  character offset in the text, including its separator (so `text[ends[j] - 1]` is the step's last character, the one
  a process reward is read at); final_correct: the boxed answer equals the last computed value.
  """
  steps: tuple
  correct: tuple
  ends: tuple

  @property
  def all_correct(self) -> bool:
    return bool(self.correct) and all(self.correct)


def _ints(text: str) -> set:
  return {int(x) for x in re.findall(r"\d+", text)}


def split_steps(text: str, separator: str = "\n") -> tuple[list[str], list[int]]:
  """Non-empty steps and their exclusive end offsets (the end includes the step's separator when there is one)."""
  if not separator:
    raise ValueError("step separator must be a non-empty string")
  steps, ends, start = [], [], 0
  while start < len(text):
    i = text.find(separator, start)
    stop = len(text) if i < 0 else i
    end = len(text) if i < 0 else i + len(separator)
    if text[start:stop].strip():
      steps.append(text[start:stop])
      ends.append(end)
    start = end
  return steps, ends


def check_steps(text: str, question: str | None = None, separator: str = "\n") -> StepCheck:
  """Verifies every step of a solution.

  A step with equations `a op b = c` is correct iff every equation's arithmetic is exact (integer division must be
  exact) and, when `question` is given, every operand appears in the question or is the result of an earlier
  equation (so correct-but-irrelevant arithmetic is not rewarded). A step with `\\boxed{v}` and no equation is correct
  iff v equals the last equation's result. Any other step (no equation, no boxed answer) is incorrect.
  """
  steps, ends = split_steps(text, separator)
  known = _ints(question) if question is not None else None
  verdicts, last = [], None
  for step in steps:
    eqs = _EQUATION.findall(step)
    if eqs:
      ok = True
      for a, op, b, c in eqs:
        a, b, c = int(a), int(b), int(c)
        if op == "+":
          ok &= a + b == c
        elif op == "-":
          ok &= a - b == c
        elif op == "*":
          ok &= a * b == c
        else:
          ok &= b != 0 and a % b == 0 and a // b == c
        if known is not None:
          ok &= a in known and b in known
          known.add(c)
        last = c
      verdicts.append(bool(ok))
    else:
      boxed = _BOXED.search(step)
      verdicts.append(boxed is not None and last is not None and int(boxed.group(1)) == last)
  return StepCheck(steps=tuple(steps), correct=tuple(verdicts), ends=tuple(ends))


def boxed_answer(text: str) -> str | None:
  """The integer in the last `\\boxed{}` of `text`, or None (the synthetic task's own answer format)."""
  found = _BOXED.findall(text)
  return found[-1] if found else None


def step_rewards(text: str, question: str | None = None, separator: str = "\n") -> tuple[list[float], list[int]]:
  """Process rewards from the rule checker: 1.0 for a correct step, 0.0 otherwise, with the steps' end offsets."""
  chk = check_steps(text, question, separator)
  return [float(c) for c in chk.correct], list(chk.ends)


def problems_to_records(problems: Sequence[Problem]) -> list[dict]:
  return [p.as_dict() for p in problems]
