"""An RL task is data: a question set with gold answers, a prompt format, and the prompts as token arrays.

Built in: GSM8K train and MATH train from ../shared/data (the paper's RL questions; their test splits are held out),
the synthetic task, and any JSONL with configurable question / answer fields. Every non-synthetic source goes
through one tolerant reader, so bad input is handled the same way everywhere: a malformed line, a row without a
question or an answer, a prompt longer than the budget is counted and reported with file and line
(`task.on_bad_row = "report"`), or stops the run with that location (`"raise"`). Nothing is truncated.

The prompts are tokenized once (`dsmath.data.tokenizer.prompt_ids`: [BOS] + prompt, or the prompt in the tokenizer's
chat template with task.chat; left-padded to the budget P) and held as arrays; a step gathers its
questions' rows by index on the device. `QuestionStream` gives each step's question indices as a pure function of
(seed, position): an epoch-wise permutation, so a resumed run draws exactly the questions the uninterrupted one did.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dsmath.data import prompts as prompt_lib
from dsmath.data import sft as sft_lib
from dsmath.data import synthetic
from dsmath.data.benchmarks import Record
from dsmath.data.tokenizer import prompt_ids
from dsmath.grading.answers import extract_gsm8k_gold, extract_last_boxed
from dsmath.paths import shared_data_dir
from dsmath.rl.config import QuestionSource, TaskConfig

# Built-in sources: (train file, test file, question field, answer field, answer format) under ../shared/data.
BUILTIN = {
    "gsm8k": ("gsm8k/train.jsonl", "gsm8k/test.jsonl", "question", "answer", "gsm8k"),
    "math": ("math/train.jsonl", "math/test.jsonl", "problem", "solution", "boxed"),
}
_MAX_EXAMPLES = 20  # bad rows listed by location in the report (all are counted)


@dataclasses.dataclass(frozen=True)
class Question:
  question: str
  answer: str  # the gold answer
  source: str  # the task.sources name
  origin: str  # "file:line" or "synthetic/<split>/<i>"
  solution: str = ""  # a worked gold solution (what the paradigm's SFT entry trains on), "" if the source has none


@dataclasses.dataclass
class BadRows:
  """Rows left out of a task, by reason, with the first locations of each."""
  counts: dict = dataclasses.field(default_factory=dict)
  examples: list = dataclasses.field(default_factory=list)

  def add(self, reason: str, origin: str, detail: str = ""):
    self.counts[reason] = self.counts.get(reason, 0) + 1
    if len(self.examples) < _MAX_EXAMPLES:
      self.examples.append(f"{origin}: {reason}{': ' + detail if detail else ''}")

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def as_dict(self) -> dict:
    return {"total": self.total, "counts": dict(self.counts), "examples": list(self.examples)}


class BadInputError(ValueError):
  """A bad row under task.on_bad_row = "raise"; the message names the file and line."""


def _gold(value: Any, fmt: str) -> Optional[str]:
  if value is None:
    return None
  text = str(value)
  if fmt == "gsm8k":
    return extract_gsm8k_gold(text) if "####" in text else None
  if fmt == "boxed":
    return extract_last_boxed(text)
  return text.strip() or None


def _solution(value: Any, fmt: str) -> str:
  """A worked solution in the SFT data's form: GSM8K's without calculator annotations, ending in a boxed answer."""
  if not isinstance(value, str):
    return ""
  if fmt == "gsm8k" and "####" in value:
    return sft_lib.gsm8k_cot({"question": "", "answer": value})[2]
  return value


def read_questions(name: str, src: QuestionSource, split: str, bad: BadRows, strict: bool) -> list[Question]:
  """The questions of one source's split; bad rows are added to `bad` (or raise when strict)."""
  if src.kind in BUILTIN:
    train_file, test_file, qf, af, fmt = BUILTIN[src.kind]
    given = src.train_path if split == "train" else src.test_path
    pattern = given or str(shared_data_dir() / (train_file if split == "train" else test_file))
    qf = qf if src.question_field == QuestionSource.question_field else src.question_field
    af = af if src.answer_field == QuestionSource.answer_field else src.answer_field
    fmt = fmt if src.answer_format == QuestionSource.answer_format else src.answer_format
    sf = src.solution_field or af
  else:
    pattern, qf, af, fmt = (src.train_path if split == "train" else src.test_path), src.question_field, \
        src.answer_field, src.answer_format
    sf = src.solution_field
    if not pattern:
      if split == "test":
        return []
      raise ValueError(f"config.task.sources.{name}.train_path is empty (kind 'jsonl' needs a file)")
  if pattern.startswith("shared:"):
    pattern = str(shared_data_dir() / pattern[len("shared:"):])
  files = sorted(glob.glob(pattern))
  if not files:
    raise FileNotFoundError(f"config.task.sources.{name}: no file matches {pattern!r}")
  limit = src.max_train if split == "train" else src.max_test

  def reject(origin, reason, detail=""):
    if strict:
      raise BadInputError(f"{origin}: {reason}{': ' + detail if detail else ''} (task.on_bad_row='raise')")
    bad.add(reason, origin, detail)

  out = []
  for path in files:
    with open(path, "rb") as f:
      for lineno, raw in enumerate(f, 1):
        origin = f"{path}:{lineno}"
        if not raw.strip():
          continue
        try:
          row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
          reject(origin, "invalid UTF-8", str(e))
          continue
        except json.JSONDecodeError as e:
          reject(origin, "malformed JSON", str(e))
          continue
        if not isinstance(row, dict):
          reject(origin, "not a JSON object", type(row).__name__)
          continue
        question = row.get(qf)
        if not isinstance(question, str) or not question.strip():
          reject(origin, f"no question (field {qf!r})")
          continue
        gold = _gold(row.get(af), fmt)
        if not gold:
          reject(origin, f"no answer (field {af!r}, format {fmt!r})")
          continue
        out.append(Question(question=question, answer=gold, source=name, origin=origin,
                            solution=_solution(row.get(sf), fmt) if sf else ""))
        if limit and len(out) >= limit:
          return out
  return out


def synthetic_questions(task: TaskConfig, seed: int, split: str, name: str = "synthetic") -> list[Question]:
  s = task.synthetic
  n, which = (s.num_train, "train") if split == "train" else (s.num_test, s.heldout_split)
  problems = synthetic.make_split(which, n, seed, s.difficulty, s.test_fraction,
                                  validation_fraction=s.validation_fraction)
  return [Question(question=p.question, answer=p.answer, source=name, origin=f"synthetic/{which}/{i}",
                   solution=p.solution) for i, p in enumerate(problems)]


def benchmark_name(task: TaskConfig, source: str) -> str:
  """What evaluation calls a source's questions: its kind for the built-in sets, its own name for a JSONL."""
  kind = task.sources[source].kind
  return source if kind == "jsonl" else kind


def prompt_function(task: TaskConfig, benchmark: str) -> Callable[[Record], str]:
  """Record -> prompt text in the task's format (the same function held-out evaluation uses)."""
  return prompt_lib.make_prompt_fn(task.prompt, benchmark, num_shots=task.num_shots)


def as_record(q: Question, benchmark: str) -> Record:
  return Record(benchmark=benchmark, id=q.origin, question=q.question, answer=q.answer)


@dataclasses.dataclass(frozen=True)
class Task:
  """The questions, their tokenized prompts (`prompt_ids`, left-padded to prompt_len) and the bad-row report."""
  train: tuple[Question, ...]
  test: tuple[Question, ...]
  prompt_tokens: np.ndarray  # [N_train, P] int32, left-padded with pad_id
  prompt_mask: np.ndarray  # [N_train, P] float32
  prompt_len: int
  tokenizer: Any
  config: TaskConfig
  bad_rows: dict

  def benchmark_of(self, q: Question) -> str:
    return benchmark_name(self.config, q.source)

  def records(self, questions: Sequence[Question]) -> list[Record]:
    return [as_record(q, self.benchmark_of(q)) for q in questions]

  def prompts(self, questions: Sequence[Question]) -> list[str]:
    return [prompt_function(self.config, self.benchmark_of(q))(as_record(q, self.benchmark_of(q)))
            for q in questions]


def build_task(task: TaskConfig, tokenizer, seed: int) -> Task:
  """Reads every source's train and test split, formats and tokenizes the prompts, and sorts out bad rows."""
  strict = task.on_bad_row == "raise"
  bad = BadRows()
  train, test = [], []
  for name, src in task.sources.items():
    if src.kind == "synthetic":
      train += synthetic_questions(task, seed, "train", name)
      test += synthetic_questions(task, seed, "test", name)
    else:
      train += read_questions(name, src, "train", bad, strict)
      test += read_questions(name, src, "test", bad, strict)
  if not train:
    raise ValueError(f"config.task.sources: no usable training question ({bad.total} bad rows: {bad.examples[:3]})")
  fns = {}

  def encode(q: Question) -> list[int]:
    bench = benchmark_name(task, q.source)
    fn = fns.setdefault(bench, prompt_function(task, bench))
    return prompt_ids(tokenizer, fn(as_record(q, bench)), task.chat)

  encoded = [encode(q) for q in train]
  test_lengths = [len(encode(q)) for q in test]
  budget = task.prompt_budget or max(len(e) for e in encoded + [[0] * n for n in test_lengths])
  keep = []
  for q, ids in zip(train, encoded):
    if len(ids) > budget:
      if strict:
        raise BadInputError(f"{q.origin}: prompt of {len(ids)} tokens exceeds the prompt budget "
                            f"(config.task.prompt_budget={budget}) (task.on_bad_row='raise')")
      bad.add("prompt longer than the budget", q.origin, f"{len(ids)} > {budget} tokens")
    else:
      keep.append((q, ids))
  test_keep = []
  for q, n in zip(test, test_lengths):
    if n > budget:
      if strict:
        raise BadInputError(f"{q.origin}: prompt of {n} tokens exceeds the prompt budget "
                            f"(config.task.prompt_budget={budget}) (task.on_bad_row='raise')")
      bad.add("prompt longer than the budget", q.origin, f"{n} > {budget} tokens")
    else:
      test_keep.append(q)
  if not keep:
    raise ValueError(f"config.task.prompt_budget={budget}: every training prompt is longer ({bad.as_dict()})")
  width = -(-budget // 8) * 8  # a multiple of 8: friendlier shapes, one compilation
  tokens = np.full((len(keep), width), tokenizer.pad_id, np.int32)
  mask = np.zeros((len(keep), width), np.float32)
  for i, (_, ids) in enumerate(keep):
    tokens[i, width - len(ids):], mask[i, width - len(ids):] = ids, 1.0
  return Task(train=tuple(q for q, _ in keep), test=tuple(test_keep), prompt_tokens=tokens, prompt_mask=mask,
              prompt_len=width, tokenizer=tokenizer, config=task, bad_rows=bad.as_dict())


def stream_indices(seed: int, num_questions: int, position: int, count: int) -> np.ndarray:
  """Question indices [count] at `position` of the stream: epoch e visits a permutation of every question, drawn
  from (seed, e); a pure function, so the position alone restores the stream."""
  out = []
  while len(out) < count:
    epoch, offset = divmod(position, num_questions)
    order = np.random.default_rng([seed, epoch]).permutation(num_questions)
    take = min(count - len(out), num_questions - offset)
    out.extend(order[offset:offset + take].tolist())
    position += take
  return np.asarray(out, np.int32)


def synthetic_tokenizer_texts(task: TaskConfig, seed: int) -> list[str]:
  """What an RL run without init_from trains its tokenizer on: the synthetic task's prompts and solutions."""
  s = task.synthetic
  return [p.prompt + p.solution for p in synthetic.make_split("train", s.num_train, seed, s.difficulty,
                                                                  s.test_fraction,
                                                                  validation_fraction=s.validation_fraction)]


def tokenizer_for(task: TaskConfig, seed: int, workdir: str):
  """The tokenizer of an RL run that does not start from another run: task.tokenizer, or one trained here."""
  from dsmath.data.tokenizer import load_tokenizer, train_sentencepiece
  if task.tokenizer:
    return load_tokenizer(task.tokenizer), os.path.abspath(task.tokenizer)
  path = os.path.join(workdir, "tokenizer", "spm.model")
  if os.path.exists(path):
    return load_tokenizer(path), path
  tok = train_sentencepiece(synthetic_tokenizer_texts(task, seed), path, vocab_size=task.tokenizer_vocab,
                            model_type=task.tokenizer_type)
  return tok, path
