"""How often a model would make the SFT teacher's slip (dsmath.data.synthetic.Teacher) instead of the right step, on
the synthetic task: for every carry / borrow step of held-out solutions, the probability of the right result line
and of the slipped one, teacher-forced on the right solution so far (one batched forward).

What it tells: GRPO on the rule reward can only raise a right carry the policy samples. A recipe SFT model that puts
little mass on right carries (its `right_share` well under the teacher's 1 - slip) gives GRPO few groups with a
right and a wrong answer on those steps (EXPERIMENTS.md, "The toy recipe over seeds").
"""
import dataclasses
import functools
import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.data import synthetic
from dsmath.data.tokenizer import prompt_ids

_STEP = re.compile(r"^(\d+) ([+-]) (\d+) = (\d+)$")


@dataclasses.dataclass(frozen=True)
class SlipStep:
  """One carry / borrow step: its context (prompt + right solution so far + "a op b =") and the two result lines."""
  context: str
  right: str  # " <a op b>\n"
  slip: str  # " <the teacher's slip>\n"


def slip_steps(questions: Sequence, prompt_fn: Callable[[object], str]) -> list[SlipStep]:
  """The carry / borrow steps of `questions` (objects with .solution; prompt_fn(question) -> its prompt text)."""
  out = []
  for q in questions:
    lines = q.solution.split("\n")
    for i, line in enumerate(lines):
      m = _STEP.match(line)
      if not m:
        continue
      a, op, b = int(m[1]), m[2], int(m[3])
      wrong = synthetic.slipped(a, op, b)
      if wrong is not None:
        out.append(SlipStep(prompt_fn(q) + "\n".join(lines[:i] + [f"{a} {op} {b} ="]), f" {m[4]}\n", f" {wrong}\n"))
  return out


def continuation_tokens(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
  """Tokens of context + continuation and where the continuation's own tokens start (the first token that differs
  from the context's encoding: SentencePiece may merge across the boundary)."""
  ids, base = prompt_ids(tokenizer, context + continuation), prompt_ids(tokenizer, context)
  k = 0
  while k < min(len(ids), len(base)) and ids[k] == base[k]:
    k += 1
  return ids, k


def line_logprobs(model_cfg: model.ModelConfig, params: dict, tokenizer, steps: Sequence[SlipStep],
                  pad_id: int = 0) -> np.ndarray:
  """[S, 2] log p(right line), log p(slipped line) of each step, teacher-forced."""
  rows = [continuation_tokens(tokenizer, s.context, c) for s in steps for c in (s.right, s.slip)]
  width = max(len(ids) for ids, _ in rows)
  tokens = np.full((len(rows), width), pad_id, np.int32)
  segments = np.zeros((len(rows), width), np.int32)
  for r, (ids, _) in enumerate(rows):
    tokens[r, :len(ids)], segments[r, :len(ids)] = ids, 1
  logp = np.asarray(_token_logprobs(model_cfg, params, jnp.asarray(tokens), jnp.asarray(segments)))
  out = np.array([logp[r, start - 1:len(ids) - 1].sum() for r, (ids, start) in enumerate(rows)])
  return out.reshape(len(steps), 2)


@functools.partial(jax.jit, static_argnums=0)
def _token_logprobs(model_cfg, params, tokens, segments):
  """[B, T-1]: log p(tokens[:, t + 1] | tokens[:, :t + 1])."""
  logits = model.logits(model_cfg, params, tokens, segment_ids=segments)
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def slip_propensity(model_cfg: model.ModelConfig, params: dict, tokenizer, questions: Sequence,
                    prompt_fn: Callable[[object], str]) -> dict:
  """Over the carry / borrow steps of `questions`: p_right (mean probability of the right line), p_slip, right_share
  (mean of p_right / (p_right + p_slip): the model's odds between the two, what the teacher writes 1 - slip of the
  time), and the share of steps with p_right below 0.01 (right carries GRPO will hardly ever sample)."""
  steps = slip_steps(questions, prompt_fn)
  if not steps:
    raise ValueError("slip_propensity: the questions have no carry / borrow step")
  p = np.exp(line_logprobs(model_cfg, params, tokenizer, steps))
  return {"steps": len(steps), "p_right": float(p[:, 0].mean()), "p_slip": float(p[:, 1].mean()),
          "right_share": float((p[:, 0] / (p[:, 0] + p[:, 1])).mean()),
          "p_right_below_0.01": float((p[:, 0] < 0.01).mean())}
