"""Rewards: the rule reward (the evaluation grader, in worker processes), the synthetic task's rule step checker as a
process reward, learned outcome / process reward models (a transformer with a scalar head) trained Math-Shepherd
style, and DAPO's overlong shaping.

Registry `REWARDS`: name -> Reward(process, learned). Outcome rewards are one scalar per completion [B]; process
rewards are (step_rewards [B, C], step_mask [B, C]) read at each step's end token (the token holding the last
character of the step, its separator included).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dsmath.data import synthetic
from dsmath.grading.answers import extract_last_boxed
from dsmath.grading.pool import Grader
from dsmath.rl import policy


@dataclasses.dataclass(frozen=True)
class Reward:
  process: bool  # step rewards (process supervision) rather than one per output
  learned: bool  # read from a trained reward model
  description: str
  # An outcome reward computed on the host: fn(texts, golds, completion tokens [R, C], lengths [R]) -> [R] float32.
  # With tool rounds the tokens and lengths include the output blocks the policy read (C = rollout.max_new_tokens +
  # tool_rounds x tool_output_tokens).
  # None for the built-in ones (the rule reward goes through the grader's workers; the learned ones run on device).
  fn: Callable | None = None


REWARDS = {
    "rule": Reward(False, False, "outcome: 1 if the final \\boxed{} answer grades equal to the gold (dsmath.grading)"),
    "step_check": Reward(True, False, "process: 1/0 per step from the synthetic task's rule step checker"),
    "orm": Reward(False, True, "outcome: a learned outcome reward model (scalar head at the last token)"),
    "prm": Reward(True, True, "process: a learned process reward model (scalar head at each step's end token)"),
}


def register_reward(name: str, reward: Reward) -> None:
  """Adds a reward to REWARDS (e.g. an outcome reward with its own `fn`); configs then name it in rl.reward."""
  if name in REWARDS:
    raise ValueError(f"reward {name!r} is registered already")
  if reward.fn is not None and (reward.process or reward.learned):
    raise ValueError("a reward with its own fn is an outcome reward computed on the host (process=learned=False)")
  REWARDS[name] = reward


# ----------------------------------------------------------------------------------------------------------------------
# Rule rewards
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Graded:
  """A batch's rule verdicts: `correct` [B] 0/1 (what accuracy, RFT / DPO data and reward-model labels read) and
  `reward` [B] (the rule reward: `correct`, or unformatted_reward where there is no boxed answer), `timeouts` in
  this batch (graded wrong)."""
  correct: np.ndarray
  reward: np.ndarray
  timeouts: int = 0


class RuleReward:
  """The rule reward through the evaluation grader's worker pool: `submit(texts, golds)` returns at once a Future of
  `Graded`, so grading runs while the device computes reference log-probs.

  Format rule: a completion without a `\\boxed{}` answer gets `unformatted_reward` without being graded (the answer
  format of the paper's SFT data), so a stray number earns nothing. Grading timeouts count as wrong and are reported.
  """

  def __init__(self, mode: str = "math_verify", unformatted_reward: float = 0.0, grader: Grader | None = None):
    self.mode = mode
    self.unformatted_reward = float(unformatted_reward)
    self._own = grader is None
    self.grader = grader or Grader(mode=mode)

  def submit(self, texts: Sequence[str], golds: Sequence[str]) -> concurrent.futures.Future:
    if len(texts) != len(golds):
      raise ValueError(f"rule reward: {len(texts)} completions but {len(golds)} gold answers")
    formatted = [i for i, t in enumerate(texts) if extract_last_boxed(t) is not None]
    inner = self.grader.submit([texts[i] for i in formatted], [golds[i] for i in formatted], self.mode)
    out: concurrent.futures.Future = concurrent.futures.Future()

    def done(f):
      try:
        verdicts = f.result()
      except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
        out.set_exception(e)
        return
      correct = np.zeros(len(texts), np.float32)
      correct[formatted] = np.asarray(list(verdicts), np.float32)
      reward = np.full(len(texts), self.unformatted_reward, np.float32)
      reward[formatted] = correct[formatted]
      out.set_result(Graded(correct=correct, reward=reward, timeouts=verdicts.timeouts))

    inner.add_done_callback(done)
    return out

  def __call__(self, texts: Sequence[str], golds: Sequence[str]) -> Graded:
    return self.submit(texts, golds).result()

  def close(self):
    if self._own:
      self.grader.close()


# ----------------------------------------------------------------------------------------------------------------------
# Steps: where they end in the tokens, and the rule checker's verdicts
# ----------------------------------------------------------------------------------------------------------------------


def token_ends(tokens: Sequence[int], char_ends: Sequence[int], decode: Callable[[Sequence[int]], str]) -> list[int]:
  """Token index holding each character end offset (exclusive) of decode(tokens): the smallest k with
  len(decode(tokens[:k + 1])) >= end, by binary search (O(steps log T) decodes; any tokenizer, byte pieces too)."""
  out = []
  n = len(tokens)
  for e in char_ends:
    lo, hi = 0, n - 1
    while lo < hi:
      mid = (lo + hi) // 2
      if len(decode(list(tokens[:mid + 1]))) >= e:
        hi = mid
      else:
        lo = mid + 1
    out.append(max(lo, 0))
  return out


def place_step_values(step_values: Sequence[Sequence[float]], step_token_ends: Sequence[Sequence[int]],
                      width: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-step values and end-token indices -> (step_rewards [B, width], step_mask [B, width])."""
  r = np.zeros((len(step_values), width), np.float32)
  m = np.zeros((len(step_values), width), np.float32)
  for b, (vals, ends) in enumerate(zip(step_values, step_token_ends)):
    for v, e in zip(vals, ends):
      if e < width:  # two steps ending in one token keep the later verdict
        r[b, e], m[b, e] = v, 1.0
  return r, m


def step_ends(texts: Sequence[str], tokens: np.ndarray, lengths: np.ndarray, decode: Callable,
              separator: str = "\n") -> list[list[int]]:
  """End token of every separator-delimited step of each completion. The last step ends at the completion's last
  token, EOS included: every token the policy wrote belongs to a step, so the decision to stop is credited with the
  last step's reward (a process advantage would otherwise leave EOS at zero). A completion with no step is one step
  ending at its last token (so it still enters the group statistics of process supervision)."""
  out = []
  for b, text in enumerate(texts):
    _, char_ends = synthetic.split_steps(text, separator)
    toks = tokens[b, :lengths[b]].tolist()
    last = max(int(lengths[b]) - 1, 0)
    ends = token_ends(toks, char_ends, decode) if (char_ends and toks) else [last]
    out.append(ends[:-1] + [last])
  return out


def step_check_values(texts: Sequence[str], questions: Sequence[str], ends: Sequence[Sequence[int]],
                      separator: str = "\n") -> list[list[float]]:
  """The synthetic task's rule checker per step (1 correct / 0 wrong), one value per end in `ends`; a completion
  with no step gets one 0."""
  vals = []
  for text, q, e in zip(texts, questions, ends):
    chk = synthetic.check_steps(text, q, separator)
    vals.append([float(c) for c in chk.correct] if chk.steps else [0.0] * len(e))
  return vals


# ----------------------------------------------------------------------------------------------------------------------
# Shaping
# ----------------------------------------------------------------------------------------------------------------------


def overlong_penalty(lengths: np.ndarray, truncated: np.ndarray, max_len: int, buffer: int,
                     penalty: float = 1.0) -> np.ndarray:
  """DAPO's soft overlong punishment (Yu et al. 2025, Eq. 13), added to the host rewards: 0 up to max_len - buffer
  tokens, then linearly down to -penalty at max_len; -penalty for a truncated completion (|y| > L_max)."""
  over = np.clip((np.asarray(lengths, np.float32) - (max_len - buffer)) / max(buffer, 1), 0.0, 1.0)
  return np.where(np.asarray(truncated), -penalty, -penalty * over).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Learned reward models
# ----------------------------------------------------------------------------------------------------------------------


def per_step_values(x: jax.Array, step_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Values at step-end tokens [B, C] -> (the k-th step's value of each row [B, K = C], 1 where row b has a step k)."""
  b, c = x.shape
  sm = step_mask.astype(jnp.float32)
  k = jnp.clip(jnp.cumsum(sm, axis=1) - 1, 0, c - 1).astype(jnp.int32)
  seg = (jnp.arange(b)[:, None] * c + k).reshape(-1)
  per = jax.ops.segment_sum((x * sm).reshape(-1), seg, num_segments=b * c).reshape(b, c)
  has = jax.ops.segment_sum(sm.reshape(-1), seg, num_segments=b * c).reshape(b, c)
  return per, has


def within_question_pairs(logit: jax.Array, label: jax.Array, valid: jax.Array, question: jax.Array):
  """The ranking term of a reward model, over pairs of the same question: (mean of softplus(-(z_a - z_b)) over the
  pairs where a's label is above b's, the fraction of those pairs ranked right, the pair count).

  logit, label, valid: [B] (an ORM's outcome) or [B, K] (a PRM's k-th steps: pairs compare the same step position).
  question: [B] question id. GRPO's group baseline removes whatever a reward model says of a question as a whole, so
  only how it orders the outputs of one question reaches the policy; this is the part of its loss that trains that.
  """
  same = question[:, None] == question[None, :]
  if logit.ndim == 1:
    logit, label, valid = logit[:, None], label[:, None], valid[:, None]
  better = (label[:, None, :] > label[None, :, :]) & (valid[:, None, :] > 0) & (valid[None, :, :] > 0)
  pairs = (better & same[:, :, None]).astype(jnp.float32)  # [B, B, K]: a ranked above b at position k
  diff = logit[:, None, :] - logit[None, :, :]
  n = pairs.sum()
  loss = (jax.nn.softplus(-diff) * pairs).sum() / jnp.maximum(n, 1.0)
  right = ((diff > 0).astype(jnp.float32) * pairs).sum() / jnp.maximum(n, 1.0)
  return loss, right, n


def pair_accuracy(score: np.ndarray, label: np.ndarray, valid: np.ndarray, question: np.ndarray) -> float:
  """within_question_pairs' fraction ranked right, on the host one question at a time (any number of rows); nan
  when no question has two outputs (steps) with different labels."""
  score, label, valid = (np.asarray(a, np.float64).reshape(len(question), -1) for a in (score, label, valid))
  right = total = 0.0
  for q in np.unique(question):
    rows = np.flatnonzero(question == q)
    z, y, v = score[rows], label[rows], valid[rows] > 0
    better = (y[:, None, :] > y[None, :, :]) & v[:, None, :] & v[None, :, :]
    total += better.sum()
    right += ((z[:, None, :] > z[None, :, :]) & better).sum()
  return float(right / total) if total else float("nan")


# How a reward model's per-token head logits z_t become P(the output is right so far) at each token t
RM_POOLS = ("last", "product")
# "product": a fresh head's per-token odds that a token is not an error, sigmoid(0 + 4) = 0.982, so a fresh model's
# P(right) over a ~25-token output starts near 0.6 (not 0.5 ** 25) and the first steps do not just raise every z_t.
PRODUCT_PRIOR = 4.0


def pooled_logits(logits: jax.Array, completion_mask: jax.Array, pool: str) -> jax.Array:
  """[B, C] head logits -> [B, C] logits of P(the completion so far is right); an ORM reads the last token's.

  "last": the head's own logit at each token (the paper's ORM: one judgement read at the last token, which must gather
  every step's errors through attention).
  "product": a noisy-AND over tokens, P_t = prod_{s <= t} sigmoid(z_s + PRODUCT_PRIOR): the output is right when no
  token of it is an error. Trained on outcome labels this is multiple-instance learning (Dietterich et al. 1997; the
  noisy-OR of Maron & Lozano-Perez 1998): the loss reaches the token that holds a wrong step, so the model learns to
  judge each equation where it is written. P_t along a solution is also a process score (the prefix is still right),
  non-increasing, learned without step labels (cf. implicit PRMs, Yuan et al. 2024, "Free Process Rewards without
  Process Labels").
  """
  if pool == "last":
    return logits
  if pool != "product":
    raise ValueError(f"reward_model.pool must be one of {RM_POOLS}, got {pool!r}")
  m = completion_mask.astype(jnp.float32)
  log_p = jnp.cumsum(jax.nn.log_sigmoid(logits.astype(jnp.float32) + PRODUCT_PRIOR) * m, axis=1)
  log_p = jnp.minimum(log_p, -1e-7)  # P = 1 exactly has no finite logit
  return (log_p - jnp.log(-jnp.expm1(log_p))) * m  # log P - log(1 - P)


def reward_model_loss(model_cfg, kind: str, pairwise_weight: float = 0.0, pool: str = "last"):
  """loss_fn(params, batch, rng) -> (loss, metrics) for an outcome ("orm") or process ("prm") reward model.

  batch: prompt, prompt_mask [B, P]; completion, mask [B, C]; and
    orm: label [B, 1] in [0, 1] (answer correct), read at the last completion token;
    prm: step_label [B, C] in [0, 1] (Math-Shepherd hard or soft estimate), step_mask [B, C] at step end tokens;
    question [B, 1] (with pairwise_weight > 0): the question each row answers.
  Binary cross-entropy on the scalar head's logit (the paper's), plus pairwise_weight x the within-question ranking
  term (within_question_pairs: right over wrong outputs of a question, or good over bad k-th steps). pool: how the
  head's per-token logits become the judged probability (pooled_logits).
  """
  if kind not in ("orm", "prm"):
    raise ValueError(f"reward model kind must be 'orm' or 'prm', got {kind!r}")

  def loss_fn(params, batch, rng=None):
    scores = pooled_logits(policy.completion_scalars(model_cfg, params, batch["prompt"], batch["prompt_mask"],
                                                     batch["completion"], batch["mask"]), batch["mask"], pool)
    if kind == "orm":
      logit = policy.last_token_scalar(scores, batch["mask"])
      label, weight = batch["label"][:, 0].astype(jnp.float32), jnp.ones_like(logit)
    else:
      logit, label, weight = scores, batch["step_label"].astype(jnp.float32), batch["step_mask"].astype(jnp.float32)
    bce = -(label * jax.nn.log_sigmoid(logit) + (1 - label) * jax.nn.log_sigmoid(-logit))
    n = jnp.maximum(weight.sum(), 1.0)
    acc = (((logit > 0) == (label > 0.5)).astype(jnp.float32) * weight).sum() / n
    loss = (bce * weight).sum() / n
    metrics = {"rm_accuracy": acc, "rm_bce": loss, "loss_weight": n}
    if pairwise_weight:
      if kind == "orm":
        pair_loss, right, count = within_question_pairs(logit, label, weight, batch["question"][:, 0])
      else:
        (z, has), (y, _) = per_step_values(logit, weight), per_step_values(label, weight)
        pair_loss, right, count = within_question_pairs(z, y, has, batch["question"][:, 0])
      loss = loss + pairwise_weight * pair_loss
      metrics.update(rm_pair_loss=pair_loss, rm_pair_accuracy=right, rm_pairs=count)
    return loss, metrics

  return loss_fn


LEARNED_SCORES = ("probability", "binary")


def learned_reward(probability: np.ndarray, score: str) -> np.ndarray:
  """The training reward read from a reward model's probabilities (reward_model.score): "probability" as the paper
  uses the score; "binary" 1 where it is > 0.5, else 0 (the model read as a verifier: its small score differences
  between outputs it judges alike carry no reward)."""
  p = np.asarray(probability, np.float32)
  if score == "probability":
    return p
  if score == "binary":
    return (p > 0.5).astype(np.float32)
  raise ValueError(f"reward_model.score must be one of {LEARNED_SCORES}, got {score!r}")


def reward_model_scores(model_cfg, params, prompt, prompt_mask, completion, completion_mask,
                        pool: str = "last") -> jax.Array:
  """[B, C] the probability, at every completion token, that the answer is right (pooled_logits)."""
  logits = policy.completion_scalars(model_cfg, params, prompt, prompt_mask, completion, completion_mask)
  return jax.nn.sigmoid(pooled_logits(logits, completion_mask, pool)) * completion_mask


@dataclasses.dataclass(frozen=True)
class ShepherdLabels:
  """Math-Shepherd estimates for one solution: per step, the fraction of completions from its prefix that reach the
  gold answer (soft) and whether any does (hard)."""
  soft: tuple
  hard: tuple


def math_shepherd_labels(step_end_tokens: Sequence[Sequence[int]], golds: Sequence[str],
                         complete: Callable[[list[tuple[int, int]], int], list[list[str]]], num_completions: int,
                         final_texts: Sequence[str], grade: Callable[[list[str], list[str]], np.ndarray]
                         ) -> list[ShepherdLabels]:
  """Labels every step of every solution by completing from that step's token prefix with the policy (Wang et al.
  2023b). complete([(row, end_token), ...], n) -> for each, n texts of the whole completion (prefix + sampled
  continuation). The last step holds the final answer and is graded as the solution itself (final_texts[row]).
  Hard label = any completion correct, soft = the fraction."""
  owners, to_complete = [], []
  for row, ends in enumerate(step_end_tokens):
    for j, e in enumerate(ends):
      last = j == len(ends) - 1
      owners.append((row, last))
      if not last:
        to_complete.append((len(owners) - 1, row, e))
  conts = complete([(row, e) for _, row, e in to_complete], num_completions) if to_complete else []
  texts, golds_flat, slot = [], [], []
  for (i, row, _), cs in zip(to_complete, conts):
    for c in cs:
      texts.append(c)
      golds_flat.append(golds[row])
      slot.append(i)
  for i, (row, last) in enumerate(owners):
    if last:
      texts.append(final_texts[row])
      golds_flat.append(golds[row])
      slot.append(i)
  correct = grade(texts, golds_flat)
  hits, tries = np.zeros(len(owners)), np.zeros(len(owners))
  np.add.at(hits, slot, correct)
  np.add.at(tries, slot, 1.0)
  frac = hits / np.maximum(tries, 1.0)
  out = []
  for row in range(len(step_end_tokens)):
    idx = [i for i, (r, _) in enumerate(owners) if r == row]
    out.append(ShepherdLabels(soft=tuple(float(frac[i]) for i in idx), hard=tuple(float(frac[i] > 0) for i in idx)))
  return out
