"""Reward functions: the rule reward (the evaluation grader), the rule step checker as a process reward, and learned
outcome / process reward models (a transformer with a scalar head) trained Math-Shepherd style.

Registry `REWARDS`: name -> (kind, description); the trainer scores a rollout with `score_rollout`. Outcome rewards
are one scalar per completion [B]; process rewards are (step_rewards [B, C], step_mask [B, C]) read at each step's
end token (the token holding the last character of the step, its separator included).
"""
import dataclasses
import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dsmath.data import synthetic
from dsmath.grading import grader as grading
from dsmath.rl import policy

REWARDS = {
    "rule": "outcome: 1 if the final \\boxed{} answer grades equal to the gold answer (dsmath.eval), else 0",
    "step_check": "process: 1/0 per step from the synthetic task's rule step checker",
    "orm": "outcome: a learned outcome reward model (scalar head at the last token)",
    "prm": "process: a learned process reward model (scalar head at each step's end token)",
}
PROCESS_REWARDS = ("step_check", "prm")
_INTEGER = re.compile(r"-?\d+")


# ----------------------------------------------------------------------------------------------------------------------
# Rule rewards
# ----------------------------------------------------------------------------------------------------------------------


def rule_rewards(texts: Sequence[str], golds: Sequence[str], mode: str = "math_verify",
                 unformatted_reward: float = 0.0) -> np.ndarray:
  """1.0 where the completion's final answer grades equal to the gold (dsmath.eval grader), else 0.0.

  Format handling: a completion without a `\\boxed{}` answer gets `unformatted_reward` without being graded (the
  answer-format rule of the paper's SFT data), so a model cannot earn reward from a stray number. A boxed integer
  against an integer gold is compared as integers in-process (math-verify's verdict on two integer literals); anything
  else goes to the evaluation grader's worker pool.
  """
  if len(texts) != len(golds):
    raise ValueError(f"rule_rewards: {len(texts)} completions but {len(golds)} gold answers")
  boxed = [grading.extract_last_boxed(t) for t in texts]
  out = np.full(len(texts), unformatted_reward, np.float32)
  idx = []
  for i, b in enumerate(boxed):
    if b is None:
      continue
    pred, gold = b.strip(), str(golds[i]).strip()
    if _INTEGER.fullmatch(pred) and _INTEGER.fullmatch(gold):
      out[i] = float(int(pred) == int(gold))  # two integer literals: equal iff equal as integers, no grader round trip
    else:
      idx.append(i)
  if idx:
    verdicts = grading.default_grader().grade_many([texts[i] for i in idx], [golds[i] for i in idx], mode)
    out[idx] = np.asarray(verdicts, np.float32)
  return out


def token_ends(tokens: Sequence[int], char_ends: Sequence[int], decode: Callable[[Sequence[int]], str]) -> np.ndarray:
  """Token index holding each character end offset (exclusive) of a decoded completion (any tokenizer).

  Offsets are measured on decode(tokens[:k+1]) prefixes, so multi-character and byte-fallback pieces map right.
  """
  offsets = np.array([len(decode(list(tokens[:k + 1]))) for k in range(len(tokens))])
  idx = np.searchsorted(offsets, np.asarray(char_ends), side="left")
  return np.minimum(idx, max(len(tokens) - 1, 0))


def place_step_rewards(step_values: Sequence[Sequence[float]], step_token_ends: Sequence[Sequence[int]],
                       width: int) -> tuple[np.ndarray, np.ndarray]:
  """Lists of per-step values and end-token indices -> (step_rewards [B, width], step_mask [B, width])."""
  r = np.zeros((len(step_values), width), np.float32)
  m = np.zeros((len(step_values), width), np.float32)
  for b, (vals, ends) in enumerate(zip(step_values, step_token_ends)):
    for v, e in zip(vals, ends):
      if e < width:  # two steps ending in one token keep the later verdict
        r[b, e], m[b, e] = v, 1.0
  return r, m


def step_check_rewards(texts: Sequence[str], questions: Sequence[str], completion_tokens: np.ndarray,
                       lengths: np.ndarray, decode: Callable, separator: str = "\n") -> tuple[np.ndarray, np.ndarray]:
  """Process rewards from the rule step checker (1 correct / 0 wrong step), placed at each step's end token.

  A completion with no step at all gets one 0 reward at its last token, so it still enters the group statistics.
  """
  vals, ends = [], []
  for b, (text, q) in enumerate(zip(texts, questions)):
    chk = synthetic.check_steps(text, q, separator)
    toks = completion_tokens[b, :lengths[b]].tolist()
    if chk.steps and toks:
      vals.append([float(c) for c in chk.correct])
      ends.append(token_ends(toks, chk.ends, decode).tolist())
    else:
      vals.append([0.0])
      ends.append([max(int(lengths[b]) - 1, 0)])
  return place_step_rewards(vals, ends, completion_tokens.shape[1])


def text_step_ends(texts: Sequence[str], completion_tokens: np.ndarray, lengths: np.ndarray, decode: Callable,
                   separator: str = "\n") -> np.ndarray:
  """step_mask [B, C]: 1 at the end token of every separator-delimited step (for a learned PRM)."""
  ends = []
  for b, text in enumerate(texts):
    _, char_ends = synthetic.split_steps(text, separator)
    toks = completion_tokens[b, :lengths[b]].tolist()
    e = token_ends(toks, char_ends, decode).tolist() if (char_ends and toks) else [max(int(lengths[b]) - 1, 0)]
    ends.append(e)
  return place_step_rewards([[1.0] * len(e) for e in ends], ends, completion_tokens.shape[1])[1]


# ----------------------------------------------------------------------------------------------------------------------
# Learned reward models
# ----------------------------------------------------------------------------------------------------------------------


def reward_model_loss(model_cfg, kind: str):
  """loss_fn(params, batch, rng) -> (loss, metrics) for an outcome ("orm") or process ("prm") reward model.

  batch: prompt, prompt_mask [B, P]; completion, completion_mask [B, C]; and
    orm: label [B] in [0, 1] (answer correct), read at the last completion token;
    prm: step_label [B, C] in [0, 1] (Math-Shepherd hard or soft estimate), step_mask [B, C] at step end tokens.
  Binary cross-entropy on the scalar head's logit.
  """
  if kind not in ("orm", "prm"):
    raise ValueError(f"reward model kind must be 'orm' or 'prm', got {kind!r}")

  def loss_fn(params, batch, rng=None):
    scores = policy.completion_scalars(model_cfg, params, batch["prompt"], batch["prompt_mask"], batch["completion"],
                                       batch["completion_mask"])
    if kind == "orm":
      logit = policy.last_token_scalar(scores, batch["completion_mask"])
      label, weight = batch["label"].astype(jnp.float32), jnp.ones_like(logit)
    else:
      logit, label, weight = scores, batch["step_label"].astype(jnp.float32), batch["step_mask"].astype(jnp.float32)
    bce = -(label * jax.nn.log_sigmoid(logit) + (1 - label) * jax.nn.log_sigmoid(-logit))
    n = jnp.maximum(weight.sum(), 1.0)
    acc = (((logit > 0) == (label > 0.5)).astype(jnp.float32) * weight).sum() / n
    return (bce * weight).sum() / n, {"rm_accuracy": acc}

  return loss_fn


def reward_model_scores(model_cfg, params, prompt, prompt_mask, completion, completion_mask) -> jax.Array:
  """sigmoid of the scalar head at every completion token [B, C]: a probability that the answer will be right."""
  return jax.nn.sigmoid(policy.completion_scalars(model_cfg, params, prompt, prompt_mask, completion,
                                                  completion_mask)) * completion_mask


@dataclasses.dataclass(frozen=True)
class ShepherdLabels:
  """Math-Shepherd estimates for one solution: per step, the fraction of completions from its prefix that reach the
  gold answer (soft) and whether any does (hard)."""
  soft: tuple
  hard: tuple
  char_ends: tuple


def math_shepherd_labels(prompts: Sequence[str], solutions: Sequence[str], golds: Sequence[str],
                         complete: Callable[[list[str], list[str], int], list[list[str]]], num_completions: int,
                         separator: str = "\n", mode: str = "math_verify") -> list[ShepherdLabels]:
  """Labels every step of every solution by completing from that step's prefix with the policy.

  complete(prompts, prefixes, n) -> for each (prompt, solution prefix), n sampled continuations of the prefix (the
  text after it). A step whose prefix
  already holds the final answer (the last step) is graded as is. Hard label = any completion correct, soft = the
  fraction (Wang et al. 2023b).
  """
  prefixes, owners = [], []
  for s, text in enumerate(solutions):
    _, ends = synthetic.split_steps(text, separator)
    for j, e in enumerate(ends):
      prefixes.append(text[:e])
      owners.append((s, j, e, j == len(ends) - 1))
  to_complete = [i for i, o in enumerate(owners) if not o[3]]
  conts = complete([prompts[owners[i][0]] for i in to_complete], [prefixes[i] for i in to_complete],
                   num_completions) if to_complete else []
  texts, golds_flat, slot = [], [], []
  for i, cs in zip(to_complete, conts):
    for c in cs:
      texts.append(prefixes[i] + c)
      golds_flat.append(golds[owners[i][0]])
      slot.append(i)
  for i, o in enumerate(owners):
    if o[3]:
      texts.append(prefixes[i])
      golds_flat.append(golds[o[0]])
      slot.append(i)
  correct = rule_rewards(texts, golds_flat, mode)
  hits, tries = np.zeros(len(owners)), np.zeros(len(owners))
  np.add.at(hits, slot, correct)
  np.add.at(tries, slot, 1.0)
  frac = hits / np.maximum(tries, 1.0)
  out = []
  for s in range(len(solutions)):
    rows = [i for i, o in enumerate(owners) if o[0] == s]
    out.append(ShepherdLabels(soft=tuple(float(frac[i]) for i in rows), hard=tuple(float(frac[i] > 0) for i in rows),
                              char_ends=tuple(owners[i][2] for i in rows)))
  return out
