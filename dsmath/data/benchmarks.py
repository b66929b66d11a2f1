"""Loaders for every benchmark in the shared data folder, into one record shape (`Record`)."""
from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

from dsmath.grading.grader import extract_gsm8k_gold, extract_last_boxed
from dsmath.paths import shared_data_dir


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


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rows.append((lineno, json.loads(line)))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON ({e})") from e
  return rows


def _field(row: dict, key: str, path: Path, lineno: int):
  if key not in row or row[key] is None:
    raise ValueError(f"{path}:{lineno}: missing field {key!r}")
  return row[key]


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


def load_math(split: str = "test", data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "math" / f"{split}.jsonl"
  out = []
  for lineno, r in _read_jsonl(path):
    sol = _field(r, "solution", path, lineno)
    gold = extract_last_boxed(sol)
    if gold is None:
      raise ValueError(f"{path}:{lineno}: solution has no \\boxed{{}} answer")
    level = _field(r, "level", path, lineno)
    out.append(Record("math", _field(r, "id", path, lineno), _field(r, "problem", path, lineno), gold,
                      metadata={"subject": _field(r, "type", path, lineno),
                                "level": int(str(level).replace("Level", "").strip() or 0) if "?" not in str(level)
                                else 0, "solution": sol}))
  return out


def load_math500(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "math" / "math500.jsonl"
  return [Record("math500", _field(r, "id", path, n), _field(r, "problem", path, n), _field(r, "answer", path, n),
                 metadata={"subject": _field(r, "subject", path, n), "level": int(_field(r, "level", path, n)),
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
  return [Record("cmath", f"cmath/{n - 1}", _field(r, "question", path, n), str(_field(r, "golden", path, n)),
                 language="zh", metadata={"grade": int(_field(r, "grade", path, n)),
                                          "reasoning_step": r.get("reasoning_step"), "num_digits": r.get("num_digits")})
          for n, r in _read_jsonl(path)]


def load_mgsm_zh(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "mgsm_zh" / "test.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    msgs = _literal_list(_field(r, "messages", path, n), path, n)
    user = [m["content"] for m in msgs if m.get("role") == "user"]
    if not user:
      raise ValueError(f"{path}:{n}: no user turn in messages")
    out.append(Record("mgsm_zh", f"mgsm_zh/{r.get('id', n - 1)}", user[0], str(_field(r, "answer", path, n)),
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
    out.append(Record("sat", f"sat/{r.get('id', n - 1)}", _field(r, "question", path, n),
                      _letters(_field(r, "Answer", path, n)), options=tuple(found[c] for c in "ABCD")))
  return out


def load_mmlu_stem(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "mmlu_stem" / "test.jsonl"
  return [Record("mmlu_stem", f"mmlu_stem/{r.get('id', n - 1)}", _field(r, "question", path, n),
                 _letters(_field(r, "answer", path, n)),
                 options=tuple(str(o) for o in _literal_list(_field(r, "options", path, n), path, n)),
                 metadata={"subject": _field(r, "topic", path, n)})
          for n, r in _read_jsonl(path)]


def load_gaokao_mathqa(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "gaokao_mathqa" / "test.jsonl"
  out = []
  for n, r in _read_jsonl(path):
    opts = _literal_list(_field(r, "options", path, n), path, n)
    q = _field(r, "question", path, n)
    if r.get("passage"):
      q = r["passage"] + "\n" + q
    out.append(Record("gaokao_mathqa", f"gaokao_mathqa/{n - 1}", q.strip(), _letters(_field(r, "label", path, n)),
                      options=tuple(_strip_option_prefix(o, _LETTERS[i]) for i, o in enumerate(opts)), language="zh",
                      metadata={"source": (r.get("other") or {}).get("source")}))
  return out


def load_gaokao_mathcloze(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "gaokao_mathcloze" / "test.jsonl"
  return [Record("gaokao_mathcloze", f"gaokao_mathcloze/{n - 1}", _field(r, "question", path, n).strip(),
                 str(_field(r, "answer", path, n)), language="zh",
                 metadata={"source": (r.get("other") or {}).get("source")})
          for n, r in _read_jsonl(path)]


def load_ocw(data_dir: Path | None = None) -> list[Record]:
  path = (data_dir or shared_data_dir()) / "ocw" / "test.jsonl"
  return [Record("ocw", f"ocw/{r.get('id', n - 1)}", _field(r, "problem", path, n), str(_field(r, "answer", path, n)),
                 metadata={"solution": r.get("solution")})
          for n, r in _read_jsonl(path)]


def load_synthetic(data_dir: Path | None = None, *, num_examples: int = 200, seed: int = 0, test_fraction: float = 0.2,
                   **difficulty) -> list[Record]:
  """The held-out split of the synthetic arithmetic task (dsmath.data.synthetic), generated, not read from disk."""
  del data_dir
  from dsmath.data import synthetic
  problems = synthetic.make_split("test", num_examples, seed, synthetic.difficulty_from_dict(difficulty), test_fraction)
  return [Record(benchmark="synthetic", id=f"synthetic/test/{i}", question=p.question, answer=p.answer,
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
