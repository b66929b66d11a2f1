"""Loaders for every benchmark in the shared data folder, into one record shape (`Record`).

Every malformed line (invalid UTF-8 or JSON, a value that is not an object, a missing or wrong-typed field) raises
ValueError naming the file and its 1-based line number.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

from dsmath.grading.answers import extract_gsm8k_gold, extract_last_boxed
from dsmath.paths import FETCH_COMMAND, shared_data_dir


@dataclasses.dataclass(frozen=True)
class Record:
  """One evaluation problem.

  id: unique within the benchmark. question: the problem text (options not included). answer: the gold answer (a
  LaTeX/plain string, or an option letter when `options` is set). options: option texts in letter order for
  multiple-choice benchmarks, else None. language: "en" or "zh". metadata: subject/level/grade/topic/solution...
  """
  benchmark: str
  id: str
  question: str
  answer: str
  options: tuple[str, ...] | None = None
  language: str = "en"
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def is_multiple_choice(self) -> bool:
    return self.options is not None

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def jsonl_objects(path: Path) -> list[tuple[int, str, dict]]:
  """(1-based line number, the line's text, its object) for each non-blank line; any bad line raises ValueError naming
  path:line."""
  try:
    data = Path(path).read_bytes()
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: benchmark file not found (`{FETCH_COMMAND} --list` says which dataset holds "
                            f"it, `{FETCH_COMMAND} --only <name>` fetches it)") from e
  rows = []
  for lineno, raw in enumerate(data.split(b"\n"), 1):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line ({e.reason})") from e
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{lineno}: invalid JSON at column {e.colno}: {e.msg}") from e
    if not isinstance(row, dict):
      raise ValueError(f"{path}:{lineno}: expected a JSON object, got {_json_type(row)}")
    rows.append((lineno, line, row))
  return rows


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
  """(1-based line number, object) for each non-blank line (`jsonl_objects`)."""
  return [(lineno, row) for lineno, _, row in jsonl_objects(path)]


def _json_type(v) -> str:
  return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
          dict: "object"}.get(type(v), type(v).__name__)


_STR, _NUM, _INT = (str,), (int, float), (int,)


def _check_type(v, key: str, types: tuple, path: Path, lineno: int):
  # bool is an int subclass in Python but never a valid number or string here.
  if isinstance(v, bool) or not isinstance(v, types):
    names = " or ".join(sorted({_json_type(t()) for t in types}))
    raise ValueError(f"{path}:{lineno}: field {key!r} must be {names}, got {_json_type(v)} {str(v)[:40]!r}")
  return v


def _field(row: dict, key: str, path: Path, lineno: int, types: tuple = _STR):
  """A required field of one of `types` (JSON string by default)."""
  if key not in row or row[key] is None:
    raise ValueError(f"{path}:{lineno}: missing field {key!r}")
  return _check_type(row[key], key, types, path, lineno)


def _optional(row: dict, key: str, path: Path, lineno: int, types: tuple = _STR, default=None):
  """An optional field: absent or null gives `default`, otherwise it must be one of `types`."""
  if row.get(key) is None:
    return default
  return _check_type(row[key], key, types, path, lineno)


def _int_field(row: dict, key: str, path: Path, lineno: int) -> int:
  """An integer given as a JSON number or a digit string ("3")."""
  v = _field(row, key, path, lineno, _INT + _STR)
  try:
    return int(v)
  except ValueError as e:
    raise ValueError(f"{path}:{lineno}: field {key!r} must be an integer, got {v[:40]!r}") from e


def _literal_list(v, path: Path, lineno: int) -> list:
  if isinstance(v, list):
    return v
  try:
    out = ast.literal_eval(v)
  except (ValueError, SyntaxError) as e:
    raise ValueError(f"{path}:{lineno}: cannot parse Python-literal list {str(v)[:60]!r}") from e
  if not isinstance(out, list):
    raise ValueError(f"{path}:{lineno}: expected a list, got {type(out).__name__}")
  return out


_LETTERS = "ABCDEFGH"


def _letters(label: str) -> str:
  """'A B D' / 'ABD' / 'B' -> sorted unique letters ('ABD'): some Gaokao/MMLU items have several right options."""
  return "".join(sorted(set(c for c in label.upper() if c in _LETTERS)))


def _strip_option_prefix(opt: str, letter: str) -> str:
  return re.sub(rf"^\s*\(?{letter}\)\s*[.:：]?\s*|^\s*{letter}[.:：]\s*", "", opt, count=1).strip()


def _answer(row: dict, key: str, path: Path, lineno: int) -> str:
  """A gold answer: a JSON string or number, kept as its text."""
  return str(_field(row, key, path, lineno, _STR + _NUM))


def _id(row: dict, path: Path, lineno: int):
  return _optional(row, "id", path, lineno, _STR + _INT, lineno - 1)


def load_math(split: str = "test", data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "math" / f"{split}.jsonl"
  out = []
  for lineno, r in _read_jsonl(path):
    sol = _field(r, "solution", path, lineno)
    gold = extract_last_boxed(sol)
    if gold is None:
      raise ValueError(f"{path}:{lineno}: solution has no \\boxed{{}} answer")
    level = str(_field(r, "level", path, lineno, _STR + _INT))
    out.append(Record("math", str(_field(r, "id", path, lineno, _STR + _INT)), _field(r, "problem", path, lineno),
                      gold, metadata={"subject": _field(r, "type", path, lineno),
                                      "level": int(level.replace("Level", "").strip() or 0) if "?" not in level
                                      else 0, "solution": sol}))
  return out


def load_math500(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "math" / "math500.jsonl"
  return [Record("math500", str(_field(r, "id", path, n, _STR + _INT)), _field(r, "problem", path, n),
                 _answer(r, "answer", path, n),
                 metadata={"subject": _field(r, "subject", path, n), "level": _int_field(r, "level", path, n),
                           "solution": _field(r, "solution", path, n)})
          for n, r in _read_jsonl(path)]


def load_gsm8k(split: str = "test", data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "gsm8k" / f"{split}.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    ans = _field(r, "answer", path, n)
    try:
      gold = extract_gsm8k_gold(ans)
    except ValueError as e:
      raise ValueError(f"{path}:{n}: {e}") from e
    out.append(Record("gsm8k", f"gsm8k/{split}/{n - 1}", _field(r, "question", path, n), gold,
                      metadata={"solution": ans}))
  return out


def load_cmath(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "cmath" / "test.jsonl"
  return [Record("cmath", f"cmath/{n - 1}", _field(r, "question", path, n), _answer(r, "golden", path, n),
                 language="zh", metadata={"grade": _int_field(r, "grade", path, n),
                                          "reasoning_step": _optional(r, "reasoning_step", path, n, _INT),
                                          "num_digits": _optional(r, "num_digits", path, n, _INT)})
          for n, r in _read_jsonl(path)]


def load_mgsm_zh(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "mgsm_zh" / "test.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    msgs = _literal_list(_field(r, "messages", path, n, (list, str)), path, n)
    if not all(isinstance(m, dict) for m in msgs):
      raise ValueError(f"{path}:{n}: field 'messages' must be a list of objects with 'role' and 'content'")
    user = [m.get("content") for m in msgs if m.get("role") == "user"]
    if not user:
      raise ValueError(f"{path}:{n}: no user turn in messages")
    if not isinstance(user[0], str):
      raise ValueError(f"{path}:{n}: the user turn's 'content' must be string, got {_json_type(user[0])}")
    out.append(Record("mgsm_zh", f"mgsm_zh/{_id(r, path, n)}", user[0], _answer(r, "answer", path, n),
                      language="zh"))
  return out


def load_sat(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "sat" / "test.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    opts = _field(r, "options", path, n)
    # "A) $f(-6)=0$ B) $f(6)=-6$ ..." -> four option texts
    parts = re.split(r"(?:^|\s)([A-D])[).:]\s", " " + opts)
    found = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
    if sorted(found) != ["A", "B", "C", "D"]:
      raise ValueError(f"{path}:{n}: cannot split options {opts[:80]!r}")
    out.append(Record("sat", f"sat/{_id(r, path, n)}", _field(r, "question", path, n),
                      _letters(_field(r, "Answer", path, n)), options=tuple(found[c] for c in "ABCD")))
  return out


def load_mmlu_stem(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "mmlu_stem" / "test.jsonl"
  return [Record("mmlu_stem", f"mmlu_stem/{_id(r, path, n)}", _field(r, "question", path, n),
                 _letters(_field(r, "answer", path, n)),
                 options=tuple(str(o) for o in _literal_list(_field(r, "options", path, n, (list, str)), path, n)),
                 metadata={"subject": _field(r, "topic", path, n)})
          for n, r in _read_jsonl(path)]


def _source(row: dict, path: Path, lineno: int):
  return _optional(row, "other", path, lineno, (dict,), {}).get("source")


def load_gaokao_mathqa(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "gaokao_mathqa" / "test.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    opts = _literal_list(_field(r, "options", path, n, (list, str)), path, n)
    if not all(isinstance(o, str) for o in opts):
      raise ValueError(f"{path}:{n}: field 'options' must be a list of strings")
    q = _field(r, "question", path, n)
    passage = _optional(r, "passage", path, n)
    if passage:
      q = passage + "\n" + q
    out.append(Record("gaokao_mathqa", f"gaokao_mathqa/{n - 1}", q.strip(), _letters(_field(r, "label", path, n)),
                      options=tuple(_strip_option_prefix(o, _LETTERS[i]) for i, o in enumerate(opts)), language="zh",
                      metadata={"source": _source(r, path, n)}))
  return out


def load_gaokao_mathcloze(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "gaokao_mathcloze" / "test.jsonl"
  return [Record("gaokao_mathcloze", f"gaokao_mathcloze/{n - 1}", _field(r, "question", path, n).strip(),
                 _answer(r, "answer", path, n), language="zh", metadata={"source": _source(r, path, n)})
          for n, r in _read_jsonl(path)]


def load_ocw(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "ocw" / "test.jsonl"
  return [Record("ocw", f"ocw/{_id(r, path, n)}", _field(r, "problem", path, n), _answer(r, "answer", path, n),
                 metadata={"solution": _optional(r, "solution", path, n)})
          for n, r in _read_jsonl(path)]


def load_synthetic(data_dir: Path | None = None, *, num_examples: int = 200, seed: int = 0, test_fraction: float = 0.2,
                   validation_fraction: float = 0.0, split: str = "test", **difficulty) -> list[Record]:
  """A held-out split ("test", or "validation" for choosing settings) of the synthetic arithmetic task
  (dsmath.data.synthetic), generated, not read from disk."""
  del data_dir
  from dsmath.data import synthetic
  if split not in ("test", "validation"):
    raise ValueError(f"synthetic benchmark split must be 'test' or 'validation', got {split!r}")
  problems = synthetic.make_split(split, num_examples, seed, synthetic.difficulty_from_dict(difficulty), test_fraction,
                                  validation_fraction=validation_fraction)
  return [Record(benchmark="synthetic", id=f"synthetic/{split}/{i}", question=p.question, answer=p.answer,
                 metadata={"solution": p.solution}) for i, p in enumerate(problems)]


LOADERS: dict[str, Callable[..., list[Record]]] = {
    "gsm8k": load_gsm8k,
    "math": load_math,
    "math500": load_math500,
    "cmath": load_cmath,
    "mgsm_zh": load_mgsm_zh,
    "sat": load_sat,
    "ocw": load_ocw,
    "mmlu_stem": load_mmlu_stem,
    "gaokao_mathcloze": load_gaokao_mathcloze,
    "gaokao_mathqa": load_gaokao_mathqa,
    "synthetic": load_synthetic,
}

# The level/subject/grade key used for breakdowns, per benchmark.
BREAKDOWN_KEYS: dict[str, tuple[str, ...]] = {
    "math": ("subject", "level"), "math500": ("subject", "level"), "cmath": ("grade",), "mmlu_stem": ("subject",)}


def load_benchmark(name: str, data_dir: Path | None = None, **options) -> list[Record]:
  """All test records of benchmark `name` (one of LOADERS); `options` go to loaders that take any (synthetic)."""
  if name not in LOADERS:
    raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(LOADERS)}")
  return LOADERS[name](data_dir=data_dir, **options)
