"""SFT examples: chain-of-thought, program-of-thought and tool-integrated solutions in a chat format.

An example is (style, question, response). The template turns it into text segments (text, trainable): the prompt is
never trained on; the response is, except the contents of tool output blocks, which the interpreter wrote, not the
model (as in ToRA). The pipeline adds BOS (where the tokenizer has one) and EOS (trained) and tokenizes each segment
on its own, so the prompt tokens equal those the sampler sees at inference. With the model's own chat template
(`ChatSftTemplate`, config.data.sft_template "chat") the prompt is the template's user turn and assistant header and
the trained reply is the template's assistant turn (the response and its end of turn, e.g. "<|im_end|>"); the
template writes its own BOS and end, so the pipeline adds neither.

Delimiters and instructions come from dsmath/data/prompts.py, so training text matches what evaluation and the sampler's
tool mode use:
  ```python
  print(48 / 2)
  ```
  ```output
  24.0
  ```

Built-in SFT formatters for the shared TRAIN splits (never the test splits; `check_not_test_split` guards paths):
  gsm8k_cot   GSM8K question -> its solution, calculator annotations removed, final `\\boxed{}` answer.
  gsm8k_pot   GSM8K question -> a Python program of its calculator steps that prints the answer (records whose last
              step is not the answer are left out, counted and logged).
  gsm8k_tool  GSM8K question -> each calculation run as a python block with its real output, then the reasoning.
  math_cot    MATH problem -> its solution (answer already in `\\boxed{}`).
Generic formatters for other JSONL/Parquet/ArrayRecord sources: cot {question, response}, pot {question, program},
tool {question, response} (a response holding python/output blocks).
"""
from __future__ import annotations

import ast
import dataclasses
import operator
import re
from pathlib import Path
from typing import Callable, Mapping, Optional

from dsmath.data.chat import ChatTemplate
from dsmath.data.prompts import BLOCK_CLOSE, INSTRUCT_SUFFIX_EN, OUTPUT_OPEN, POT_SUFFIX_EN, TOOL_SUFFIX_EN
from dsmath.data.prompts import PYTHON_OPEN as CODE_OPEN
from dsmath.data.prompts import format_output_block

# "plain": no instruction, the synthetic task's format (question, newline, solution).
INSTRUCTIONS = {"cot": INSTRUCT_SUFFIX_EN, "pot": POT_SUFFIX_EN, "tool": TOOL_SUFFIX_EN, "plain": ""}


def user_text(style: str, question: str) -> str:
  """The question and the style's instruction: what the user says (the same text as dsmath.data.prompts' zero-shot,
  plain, PoT and tool prompts)."""
  return f"{question.strip()}\n{INSTRUCTIONS[style]}"


@dataclasses.dataclass(frozen=True)
class Template:
  """Chat format: prompt = user_prefix + question + "\\n" + instruction + assistant_prefix; then the response."""
  user_prefix: str
  assistant_prefix: str
  writes_specials = False  # the pipeline adds BOS and EOS

  def prompt(self, style: str, question: str) -> str:
    return f"{self.user_prefix}{user_text(style, question)}{self.assistant_prefix}"

  def segments(self, style: str, question: str, response: str) -> list[tuple[str, bool]]:
    return [(self.prompt(style, question), False)] + response_segments(response)


@dataclasses.dataclass(frozen=True)
class ChatSftTemplate:
  """A model's own chat template (dsmath.data.chat): the prompt is its user turn and assistant header, the trained
  reply its assistant turn (the response and the end of turn it writes)."""
  chat: ChatTemplate
  writes_specials = True  # the template writes BOS and the end of the reply

  def prompt(self, style: str, question: str) -> str:
    return self.chat.prompt(user_text(style, question))

  def segments(self, style: str, question: str, response: str) -> list[tuple[str, bool]]:
    return [(self.prompt(style, question), False)] + response_segments(
        self.chat.assistant_turn(user_text(style, question), response))


# DeepSeekMath-Instruct's chat format ("User: ...\n\nAssistant: ..." then EOS); "plain": the question and a newline,
# the prompt dsmath.data.prompts.plain_prompt gives the RL stage and evaluation (the synthetic task's format).
# config.data.sft_template "chat" is the tokenizer's own template instead (ChatSftTemplate).
TEMPLATES = {"deepseek": Template(user_prefix="User: ", assistant_prefix="\n\nAssistant: "),
             "plain": Template(user_prefix="", assistant_prefix="")}

_OUTPUT_BLOCK = re.compile(re.escape(OUTPUT_OPEN) + r"(.*?)" + re.escape(BLOCK_CLOSE), re.S)


def response_segments(response: str) -> list[tuple[str, bool]]:
  """Response text -> (text, trainable) pieces; the contents of each output block are not trainable (the fences
  are: the model learns to open and close them, the interpreter fills them)."""
  pieces, pos = [], 0
  for m in _OUTPUT_BLOCK.finditer(response):
    pieces.append((response[pos:m.start(1)], True))
    pieces.append((m.group(1), False))
    pos = m.end(1)
  pieces.append((response[pos:], True))
  return [(t, trainable) for t, trainable in pieces if t]


def example_segments(template: Template | ChatSftTemplate, style: str, question: str,
                     response: str) -> list[tuple[str, bool]]:
  return template.segments(style, question, response)


# ---- arithmetic of GSM8K calculator annotations, evaluated for real (no eval of arbitrary code) ----

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CALC = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def _arith(node):
  if isinstance(node, ast.Expression):
    return _arith(node.body)
  if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
    return node.value
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
    return -_arith(node.operand) if isinstance(node.op, ast.USub) else _arith(node.operand)
  if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
    right = _arith(node.right)
    if isinstance(node.op, ast.Pow) and abs(right) > 100:
      raise ValueError("exponent too large")
    return _OPS[type(node.op)](_arith(node.left), right)
  raise ValueError(f"not plain arithmetic: {ast.dump(node)}")


def calc(expr: str):
  """Value of an arithmetic expression as Python computes it; ValueError if it is anything else."""
  try:
    return _arith(ast.parse(expr.strip(), mode="eval"))
  except (SyntaxError, ZeroDivisionError, OverflowError) as e:
    raise ValueError(f"cannot evaluate {expr!r}: {e}") from None


def _code_block(code: str) -> str:
  return f"{CODE_OPEN}{code.rstrip(chr(10))}\n{BLOCK_CLOSE}"


def gsm8k_final(answer: str) -> str:
  return answer.rsplit("####", 1)[-1].strip()


def _gsm8k_body(answer: str) -> str:
  return answer.rsplit("####", 1)[0].rstrip()


def gsm8k_cot(record: Mapping) -> Optional[tuple[str, str, str]]:
  body = _CALC.sub("", _gsm8k_body(record["answer"]))
  return "cot", record["question"], f"{body}\nThe answer is $\\boxed{{{gsm8k_final(record['answer'])}}}$."


def gsm8k_pot(record: Mapping) -> Optional[tuple[str, str, str]]:
  steps = _CALC.findall(record["answer"])
  try:
    values = [calc(expr) for expr, _ in steps]
    final = float(gsm8k_final(record["answer"]).replace(",", ""))
  except ValueError:
    return None
  if not steps or abs(float(values[-1]) - final) > 1e-6:
    return None
  lines = [f"step{i} = {expr.strip()}" for i, (expr, _) in enumerate(steps, 1)] + [f"print(step{len(steps)})"]
  return "pot", record["question"], _code_block("\n".join(lines))


def gsm8k_tool(record: Mapping) -> Optional[tuple[str, str, str]]:
  out = []
  try:
    for line in _gsm8k_body(record["answer"]).split("\n"):
      for expr, _ in _CALC.findall(line):
        # str() of the value is exactly what print() writes.
        out.append(_code_block(f"print({expr.strip()})") + format_output_block(str(calc(expr)) + "\n"))
      out.append(_CALC.sub("", line) + "\n")
  except ValueError:
    return None
  return "tool", record["question"], "".join(out) + f"The answer is $\\boxed{{{gsm8k_final(record['answer'])}}}$."


def math_cot(record: Mapping) -> Optional[tuple[str, str, str]]:
  return "cot", record["problem"], record["solution"]


def synthetic_solution(record: Mapping):
  """The synthetic task's rows of the sources stage: question -> the solution as its teacher wrote it."""
  return "plain", record["question"], record["solution"]


def generic_cot(record: Mapping):
  return "cot", record["question"], record["response"]


def generic_pot(record: Mapping):
  return "pot", record["question"], _code_block(record["program"].strip("\n"))


def generic_tool(record: Mapping):
  return "tool", record["question"], record["response"]


SFT_FORMATTERS: dict[str, Callable[[Mapping], Optional[tuple[str, str, str]]]] = {
    "gsm8k_cot": gsm8k_cot, "gsm8k_pot": gsm8k_pot, "gsm8k_tool": gsm8k_tool, "math_cot": math_cot,
    "cot": generic_cot, "pot": generic_pot, "tool": generic_tool, "synthetic": synthetic_solution,
}

# Built-in SFT sources on the shared TRAIN splits (paths in the `shared:` scheme of dsmath.data.sources).
BUILTIN_SFT_SOURCES = {
    "gsm8k_cot": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k_cot", "weight": 1.0},
    "gsm8k_pot": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k_pot", "weight": 0.5},
    "gsm8k_tool": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k_tool", "weight": 0.5},
    "math_cot": {"path": "shared:math/train.jsonl", "formatter": "math_cot", "weight": 1.0},
}


def check_not_test_split(path: str) -> None:
  """Refuses evaluation files of the benchmark folder or the shipped toy subset (anything there but a train split) as
  SFT data."""
  from dsmath.paths import DataNotFound, TOY_DATA_DIR, shared_data_dir
  try:
    folders = [shared_data_dir().resolve(), TOY_DATA_DIR.resolve()]
  except DataNotFound:
    folders = [TOY_DATA_DIR.resolve()]
  p = Path(path).resolve()
  if any(folder in p.parents for folder in folders) and not p.name.startswith("train"):
    raise ValueError(f"{p} is an evaluation split of the shared data; SFT may only use train splits")
