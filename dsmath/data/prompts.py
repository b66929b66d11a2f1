"""Prompt formats: zero-shot instruct (CoT), few-shot CoT (train-split exemplars only), PoT and tool-integrated.

The tool-integrated delimiters are module constants so the sampler's tool mode uses exactly the same text: the model
writes ``PYTHON_OPEN`` code ``BLOCK_CLOSE``; the executor appends ``OUTPUT_OPEN`` output ``BLOCK_CLOSE``.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Sequence

from dsmath.data.benchmarks import Record, load_gsm8k, load_math

# DeepSeekMath-Instruct's chain-of-thought suffixes (English; Chinese for CMATH / MGSM-zh / Gaokao).
INSTRUCT_SUFFIX_EN = "Please reason step by step, and put your final answer within \\boxed{}."
INSTRUCT_SUFFIX_ZH = "请通过逐步推理来解答问题，并把最终答案放置于\\boxed{}中。"
POT_SUFFIX_EN = ("Please write a Python program to solve the problem above. The program must print the final answer "
                 "(and nothing else) on its last line.")
POT_SUFFIX_ZH = "请编写一个 Python 程序来解决上述问题，程序的最后一行输出最终答案（只输出答案）。"
TOOL_SUFFIX_EN = ("Please integrate natural language reasoning with programs to solve the problem above, and put your "
                  "final answer within \\boxed{}.")
TOOL_SUFFIX_ZH = "请结合自然语言推理和程序来解决上述问题，并把最终答案放置于\\boxed{}中。"
CHOICE_HINT_EN = "Answer with the letter of the correct option."
CHOICE_HINT_ZH = "请给出正确选项的字母。"

# Tool-integrated / PoT code and output blocks.
PYTHON_OPEN = "```python\n"
OUTPUT_OPEN = "```output\n"
BLOCK_CLOSE = "```\n"
_PY_BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def extract_programs(text: str) -> list[str]:
  """Every complete ```python ... ``` block in `text`, in order."""
  return _PY_BLOCK_RE.findall(text or "")


def extract_last_program(text: str) -> str | None:
  """The last complete python block (the PoT program), or None."""
  progs = extract_programs(text)
  return progs[-1] if progs else None


def format_output_block(output: str, max_chars: int = 2000) -> str:
  """The block appended after a python block in tool-integrated reasoning (long outputs are cut in the middle)."""
  out = output if len(output) <= max_chars else output[:max_chars // 2] + "\n...\n" + output[-max_chars // 2:]
  if out and not out.endswith("\n"):
    out += "\n"
  return OUTPUT_OPEN + out + BLOCK_CLOSE


def _options_text(rec: Record) -> str:
  return "\n".join(f"({'ABCDEFGH'[i]}) {o}" for i, o in enumerate(rec.options or ()))


def question_text(rec: Record) -> str:
  q = rec.question.strip()
  if rec.is_multiple_choice:
    hint = CHOICE_HINT_ZH if rec.language == "zh" else CHOICE_HINT_EN
    q = f"{q}\n{_options_text(rec)}\n{hint}"
  return q


def zero_shot_prompt(rec: Record) -> str:
  """Instruct format: question, then the step-by-step/boxed suffix in the record's language."""
  return f"{question_text(rec)}\n{INSTRUCT_SUFFIX_ZH if rec.language == 'zh' else INSTRUCT_SUFFIX_EN}"


def plain_prompt(rec: Record) -> str:
  """The question and a newline, no instruction: the format small models trained on the synthetic task expect."""
  return f"{question_text(rec)}\n"


def pot_prompt(rec: Record) -> str:
  return f"{question_text(rec)}\n{POT_SUFFIX_ZH if rec.language == 'zh' else POT_SUFFIX_EN}"


def tool_prompt(rec: Record) -> str:
  return f"{question_text(rec)}\n{TOOL_SUFFIX_ZH if rec.language == 'zh' else TOOL_SUFFIX_EN}"


def _gsm8k_solution(sol: str) -> str:
  """GSM8K train solution without <<calc>> annotations, ending in a boxed answer."""
  body, gold = sol.rsplit("####", 1)
  body = re.sub(r"<<[^>]*>>", "", body).strip()
  return f"{body}\nThe answer is $\\boxed{{{gold.strip()}}}$."


def few_shot_exemplars(num_shots: int, source: str = "math", seed: int = 0, data_dir=None) -> list[tuple[str, str]]:
  """(question, worked solution) pairs drawn deterministically from a TRAIN split (never test).

  source: "math" (MATH train, solutions already end in \\boxed{}) or "gsm8k" (GSM8K train).
  """
  if source == "math":
    pool = [(r.question, r.metadata["solution"]) for r in load_math("train", data_dir=data_dir)
            if len(r.metadata["solution"]) < 1200]
  elif source == "gsm8k":
    pool = [(r.question, _gsm8k_solution(r.metadata["solution"])) for r in load_gsm8k("train", data_dir=data_dir)]
  else:
    raise ValueError(f"few-shot source must be 'math' or 'gsm8k', got {source!r}")
  rng = random.Random(seed)
  return rng.sample(pool, num_shots)


def few_shot_prompt(rec: Record, exemplars: Sequence[tuple[str, str]]) -> str:
  """Few-shot CoT: 'Question: ...\\nAnswer: ...' exemplars, then the test question."""
  parts = [f"Question: {q.strip()}\nAnswer: {s.strip()}" for q, s in exemplars]
  parts.append(f"Question: {question_text(rec)}\nAnswer:")
  return "\n\n\n".join(parts)


# Few-shot exemplar source per benchmark (GSM8K-like word problems use GSM8K train; the rest MATH train).
FEW_SHOT_SOURCE = {"gsm8k": "gsm8k", "cmath": "gsm8k", "mgsm_zh": "gsm8k"}

PROMPT_STYLES = ("zero_shot", "few_shot", "pot", "tool", "plain")


def make_prompt_fn(style: str, benchmark: str, *, num_shots: int = 4, seed: int = 0,
                   data_dir=None) -> Callable[[Record], str]:
  """Record -> prompt text for a prompt style (one of PROMPT_STYLES)."""
  if style == "zero_shot":
    return zero_shot_prompt
  if style == "plain":
    return plain_prompt
  if style == "pot":
    return pot_prompt
  if style == "tool":
    return tool_prompt
  if style == "few_shot":
    ex = few_shot_exemplars(num_shots, FEW_SHOT_SOURCE.get(benchmark, "math"), seed, data_dir)
    return lambda rec: few_shot_prompt(rec, ex)
  raise ValueError(f"unknown prompt style {style!r}; choose from {PROMPT_STYLES}")
