"""Advantage estimators: GRPO outcome and process supervision (paper sec. 4.1.2-4.1.3), PPO's GAE, and beyond the
paper Dr. GRPO (no std scaling) and RLOO (leave-one-out baseline); the unified paradigm's RFT / SFT coefficients.

Layout: a batch holds groups of G consecutive completions of the same question (rows i*G .. i*G+G-1), right-padded
to T tokens; `mask[b, t]` is 1 on the completion tokens the policy wrote (not on tool output blocks). All functions
are pure and jittable; every output is zero on padding.

`ESTIMATORS[name]` is an `Estimator`: `fn(batch, group_size, cfg, ppo) -> {"advantages": [B, T], ...}` over a batch
dict ("rewards" [B], "mask", and "step_rewards"/"step_mask" for process rewards, "values"/"old_logp"/"ref_logp" for
GAE), plus what it needs, so the RL loop picks one by name and never branches on a method.
"""
import dataclasses
import functools
import types
from typing import Callable

import jax
import jax.numpy as jnp


def _grouped(x: jax.Array, group_size: int) -> jax.Array:
  if x.shape[0] % group_size:
    raise ValueError(f"batch of {x.shape[0]} rows is not a whole number of groups of size {group_size} "
                     "(config.rollout.group_size)")
  return x.reshape(x.shape[0] // group_size, group_size, *x.shape[1:])


def _std(sq_dev_sum: jax.Array, count: jax.Array, ddof: int) -> jax.Array:
  return jnp.sqrt(sq_dev_sum / jnp.maximum(count - ddof, 1.0))


@functools.partial(jax.jit, static_argnames=("group_size", "scale_std", "ddof"))
def grpo_outcome(rewards: jax.Array, mask: jax.Array, *, group_size: int, scale_std: bool = True,
                 eps: float = 1e-4, ddof: int = 1) -> jax.Array:
  """A_{i,t} = (r_i - mean(r)) / (std(r) + eps) over each group, for every token of o_i.

  Args:
    rewards: [B] one scalar reward per completion, B = num_groups * group_size.
    mask: [B, T] completion-token mask.
    scale_std: the paper divides by the group std (True); False keeps r - mean (the "Dr. GRPO" variant).
    eps: keeps a group whose rewards are all equal at exactly zero advantage (0 / eps), never NaN.
    ddof: 1 = the sample std (torch's default, as TRL uses); 0 = the population std.
  Returns:
    [B, T] float32 advantages, zero on padding.
  """
  r = _grouped(rewards.astype(jnp.float32), group_size)  # [N, G]
  # a group of equal rewards carries no signal: exactly zero (float mean can be off by an ulp)
  centred = jnp.where(r.max(axis=1, keepdims=True) == r.min(axis=1, keepdims=True), 0.0,
                      r - r.mean(axis=1, keepdims=True))
  if scale_std:
    std = _std(jnp.sum(centred ** 2, axis=1, keepdims=True), jnp.float32(group_size), ddof)
    centred = centred / (std + eps)
  return centred.reshape(-1)[:, None] * mask.astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Process credit assignment: step rewards -> the return of every token
# ----------------------------------------------------------------------------------------------------------------------
# A credit function maps step rewards r [B, T] (r_i^k at the end token of step k, 0 elsewhere), the step-end mask
# [B, T] and the AdvantageConfig to returns G [B, T]: what the tokens of step k of o_i are credited with. Tokens after
# the last step end get 0 (the RL step folds EOS into the last step, so a completion has none).


def _next_end_index(step_mask: jax.Array) -> jax.Array:
  """[B, T] index of the first step end at or after t (T where there is none)."""
  t = step_mask.shape[1]
  pos = jnp.where(step_mask > 0, jnp.arange(t)[None, :], t)
  return jax.lax.cummin(pos, axis=1, reverse=True)


def credit_sum(r, step_mask, cfg):
  """The paper's sum form (sec. 4.1.3): G_t = sum of the step rewards r^k with index(k) >= t."""
  return jnp.flip(jnp.cumsum(jnp.flip(r * step_mask, axis=1), axis=1), axis=1)


def credit_min(r, step_mask, cfg):
  """Min-form credit assignment (PURE, Cheng et al. 2025, "Stop Summation"): G_t = min of r^k over the steps with
  index(k) >= t, so a trajectory is worth its worst remaining step and added steps can only lower it."""
  big = jnp.finfo(jnp.float32).max
  g = jax.lax.cummin(jnp.where(step_mask > 0, r, big), axis=1, reverse=True)
  return jnp.where(g == big, 0.0, g)


def credit_clip(r, step_mask, cfg):
  """Clip mechanism (Gao et al. 2024, "On Designing Effective RL Reward at Training Time for LLM Reasoning"): each
  step reward becomes min(r^k - eta, 0) (eta = advantage.clip_eta), then the sum form: no step adds to a return, so
  extra steps cannot raise it (the return is upper-bounded by 0)."""
  return credit_sum(jnp.minimum(r - cfg.clip_eta, 0.0), step_mask, cfg)


def credit_delta(r, step_mask, cfg):
  """Delta mechanism (Gao et al. 2024): step k's reward becomes r^k - r^{k+1}, so the sum form telescopes and a
  token of step k is credited with r^{k(t)} - r^K. Gao et al. cross out the last step's reward and add the success
  reward there; here the last step keeps r^K (so G_t = r^{k(t)}, bounded by the reward's range), and the success
  reward is reward.verifier_weight's term."""
  nxt = _next_end_index(step_mask)
  return jnp.where(nxt < r.shape[1], jnp.take_along_axis(r * step_mask, jnp.minimum(nxt, r.shape[1] - 1), axis=1),
                   0.0)


@dataclasses.dataclass(frozen=True)
class Credit:
  """fn(step_rewards [B, T], step_mask [B, T], cfg: AdvantageConfig) -> returns [B, T]."""
  fn: Callable
  description: str


CREDIT: dict[str, Credit] = {
    "sum": Credit(credit_sum, "the paper's sum of the normalised rewards of the steps ending at or after t"),
    "min": Credit(credit_min, "PURE's min form: the worst reward of the steps ending at or after t"),
    "clip": Credit(credit_clip, "Gao et al.'s clip: sum of min(r - eta, 0), never positive"),
    "delta": Credit(credit_delta, "Gao et al.'s delta: r^k - r^{k+1} summed, i.e. the current step's reward"),
}


@functools.partial(jax.jit, static_argnames=("group_size", "scale_std", "ddof", "credit"))
def grpo_process(step_rewards: jax.Array, step_mask: jax.Array, mask: jax.Array, *, group_size: int,
                 scale_std: bool = True, eps: float = 1e-4, ddof: int = 1, credit: str = "sum",
                 clip_eta: float = 0.5) -> jax.Array:
  """Process supervision as the paper writes it (sec. 4.1.3): step rewards normalised with the mean and std over all
  steps of all outputs in the group (the set R), then credited to tokens: with credit "sum",
  A_{i,t} = sum of the normalised step rewards of o_i whose end token index(j) >= t.

  Args:
    step_rewards: [B, T] reward r_i^{index(j)} placed at the end token index(j) of each step j (0 elsewhere).
    step_mask: [B, T] 1 at each step's end token.
    mask: [B, T] completion-token mask.
    credit: a key of CREDIT applied to the normalised rewards (the paper: "sum").
  Returns:
    [B, T] float32 advantages, zero on padding.
  """
  sm = _grouped(step_mask.astype(jnp.float32), group_size)  # [N, G, T]
  r = _grouped(step_rewards.astype(jnp.float32), group_size) * sm
  count = sm.sum(axis=(1, 2), keepdims=True)
  mean = r.sum(axis=(1, 2), keepdims=True) / jnp.maximum(count, 1.0)
  big = jnp.finfo(jnp.float32).max
  constant = jnp.max(jnp.where(sm > 0, r, -big), axis=(1, 2), keepdims=True) == jnp.min(
      jnp.where(sm > 0, r, big), axis=(1, 2), keepdims=True)
  norm = jnp.where(constant, 0.0, (r - mean) * sm)
  if scale_std:
    std = _std(jnp.sum(norm ** 2, axis=(1, 2), keepdims=True), count, ddof)
    norm = norm / (std + eps)
  norm = norm.reshape(step_rewards.shape)
  cfg = types.SimpleNamespace(clip_eta=clip_eta)
  return CREDIT[credit].fn(norm, step_mask.astype(jnp.float32), cfg) * mask.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("group_size", "scale_std", "ddof", "credit"))
def grpo_process_relative(step_rewards: jax.Array, step_mask: jax.Array, mask: jax.Array, *, group_size: int,
                          scale_std: bool = True, eps: float = 1e-4, ddof: int = 1, credit: str = "sum",
                          clip_eta: float = 0.5) -> jax.Array:
  """Group-relative process advantages: returns first, then a baseline per step position.

  G_i^k = the return of step k of o_i under `credit` (CREDIT, on the raw step rewards); b^k = the mean of G_j^k over
  the outputs j of the group that have a k-th step; A_{i,t} = (G_i^{k(t)} - b^{k(t)}) / (std + eps), with the std
  of those centred values over all steps of the group. Outputs that are identical get exactly zero (their G_j^k are
  equal at every k), and so does any position where the outputs that reach it agree, whatever the reward model's
  drift along a solution. (The paper's form normalises each step reward over all steps of the group first, so a
  drift along identical solutions moves every token of them.)

  Args / returns: as grpo_process; k(t) = the step whose end is the first end at or after t.
  """
  b, t = step_rewards.shape
  sm = step_mask.astype(jnp.float32)
  cfg = types.SimpleNamespace(clip_eta=clip_eta)
  g = CREDIT[credit].fn(step_rewards.astype(jnp.float32) * sm, sm, cfg)  # [B, T] returns, constant within a step
  k_end = (jnp.cumsum(sm, axis=1) - 1).astype(jnp.int32)  # step index at each end token
  seg = (jnp.arange(b)[:, None] * t + jnp.clip(k_end, 0, t - 1)).reshape(-1)
  per_step = jax.ops.segment_sum((g * sm).reshape(-1), seg, num_segments=b * t).reshape(b, t)  # G_i^k [B, K = T]
  has = jax.ops.segment_sum(sm.reshape(-1), seg, num_segments=b * t).reshape(b, t)  # 1 where o_i has a step k
  v, h = _grouped(per_step, group_size), _grouped(has, group_size)  # [N, G, K]
  n = h.sum(axis=1, keepdims=True)
  base = (v * h).sum(axis=1, keepdims=True) / jnp.maximum(n, 1.0)
  big = jnp.finfo(jnp.float32).max
  agree = jnp.max(jnp.where(h > 0, v, -big), axis=1, keepdims=True) == jnp.min(jnp.where(h > 0, v, big), axis=1,
                                                                               keepdims=True)
  centred = jnp.where(agree, 0.0, v - base) * h
  if scale_std:
    std = _std(jnp.sum(centred ** 2, axis=(1, 2), keepdims=True), h.sum(axis=(1, 2), keepdims=True), ddof)
    centred = centred / (std + eps)
  k_tok = jnp.clip(jnp.cumsum(sm, axis=1) - sm, 0, t - 1).astype(jnp.int32)  # step index of each token
  adv = jnp.take_along_axis(centred.reshape(b, t), k_tok, axis=1)
  after_last = jnp.cumsum(sm, axis=1) - sm >= sm.sum(axis=1, keepdims=True)  # tokens past the last step end
  return jnp.where(after_last, 0.0, adv) * mask.astype(jnp.float32)


@jax.jit
def gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation as one reverse scan over time.

  delta_t = r_t + gamma * V_{t+1} - V_t (V after the last completion token is 0: the episode ends there);
  A_t = delta_t + gamma * lam * A_{t+1}.

  Args:
    rewards, values, mask: [B, T], right-padded completions.
  Returns:
    (advantages [B, T], returns = advantages + values [B, T]), zero on padding.
  """
  m = mask.astype(jnp.float32)
  v = values.astype(jnp.float32) * m
  r = rewards.astype(jnp.float32) * m

  def step(carry, xs):
    next_adv, next_value = carry
    r_t, v_t, m_t = xs
    adv = (r_t + gamma * next_value - v_t + gamma * lam * next_adv) * m_t
    return (adv, v_t), adv

  init = (jnp.zeros(r.shape[0], jnp.float32), jnp.zeros(r.shape[0], jnp.float32))
  _, adv_t = jax.lax.scan(step, init, (r.T, v.T, m.T), reverse=True)
  adv = adv_t.T
  return adv, (adv + v) * m


@jax.jit
def whiten(x: jax.Array, mask: jax.Array, eps: float = 1e-8) -> jax.Array:
  """(x - mean) / std over the masked entries (optional PPO advantage normalisation)."""
  m = mask.astype(jnp.float32)
  n = jnp.maximum(m.sum(), 1.0)
  mean = (x * m).sum() / n
  var = (((x - mean) * m) ** 2).sum() / n
  return (x - mean) * jax.lax.rsqrt(var + eps) * m


@jax.jit
def ppo_token_rewards(scores: jax.Array, old_logp: jax.Array, ref_logp: jax.Array, mask: jax.Array,
                      beta: float) -> jax.Array:
  """PPO's per-token reward: r_t = r_phi(q, o) * [t is the last token] - beta * log(pi_old(o_t) / pi_ref(o_t)).

  Uses the rollout's log-probs (no gradient flows through a reward). scores: [B]; the rest [B, T].
  """
  m = mask.astype(jnp.float32)
  length = m.sum(axis=1).astype(jnp.int32)
  last = jax.nn.one_hot(jnp.maximum(length - 1, 0), m.shape[1], dtype=jnp.float32) * (length > 0)[:, None]
  return (scores.astype(jnp.float32)[:, None] * last - beta * (old_logp - ref_logp)) * m



@functools.partial(jax.jit, static_argnames=("group_size",))
def rloo(rewards: jax.Array, mask: jax.Array, *, group_size: int) -> jax.Array:
  """RLOO (Ahmadian et al. 2024): A_i = r_i - (1/(G-1)) sum_{j != i} r_j, the REINFORCE baseline of the other
  samples of the same question, for every token of o_i. Equals G/(G-1) (r_i - mean(r))."""
  if group_size < 2:
    raise ValueError("RLOO needs group_size >= 2 (rollout.group_size): a leave-one-out baseline needs other samples")
  r = _grouped(rewards.astype(jnp.float32), group_size)
  baseline = (r.sum(axis=1, keepdims=True) - r) / (group_size - 1)
  equal = r.max(axis=1, keepdims=True) == r.min(axis=1, keepdims=True)  # no signal: exactly 0, not a rounding error
  return jnp.where(equal, 0.0, r - baseline).reshape(-1)[:, None] * mask.astype(jnp.float32)


def correct_indicator(rewards: jax.Array, mask: jax.Array) -> jax.Array:
  """RFT / Online RFT's gradient coefficient I(o) (Eq. 10): 1 on every token of a correct output, else 0."""
  return (rewards > 0).astype(jnp.float32)[:, None] * mask.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Estimator:
  """fn(batch, group_size, cfg: AdvantageConfig, ppo: PPOConfig) -> {"advantages", ...}; `process`: reads step
  rewards (a process reward); `values`: needs the value model's predictions (and returns "returns")."""
  fn: Callable
  process: bool = False
  values: bool = False


def _grpo_outcome(b, g, cfg, ppo):
  return {"advantages": grpo_outcome(b["rewards"], b["mask"], group_size=g, scale_std=cfg.scale_std, eps=cfg.eps,
                                     ddof=cfg.ddof)}


def _grpo_process(b, g, cfg, ppo):
  return {"advantages": grpo_process(b["step_rewards"], b["step_mask"], b["mask"], group_size=g,
                                     scale_std=cfg.scale_std, eps=cfg.eps, ddof=cfg.ddof, credit=cfg.credit,
                                     clip_eta=cfg.clip_eta)}


def _grpo_process_relative(b, g, cfg, ppo):
  return {"advantages": grpo_process_relative(b["step_rewards"], b["step_mask"], b["mask"], group_size=g,
                                              scale_std=cfg.scale_std, eps=cfg.eps, ddof=cfg.ddof, credit=cfg.credit,
                                              clip_eta=cfg.clip_eta)}


def _dr_grpo(b, g, cfg, ppo):
  # Dr. GRPO (Liu et al. 2025): the group mean is the baseline, the std is not divided out
  return {"advantages": grpo_outcome(b["rewards"], b["mask"], group_size=g, scale_std=False)}


def _dr_grpo_process(b, g, cfg, ppo):
  return {"advantages": grpo_process(b["step_rewards"], b["step_mask"], b["mask"], group_size=g, scale_std=False,
                                     credit=cfg.credit, clip_eta=cfg.clip_eta)}


def _gae(b, g, cfg, ppo):
  ref = b["ref_logp"] if ppo.kl_beta > 0 else b["old_logp"]  # no reference model is kept at kl_beta 0
  rewards = ppo_token_rewards(b["rewards"], b["old_logp"], ref, b["mask"], ppo.kl_beta)
  adv, ret = gae(rewards, b["values"], b["mask"], ppo.gamma, ppo.lam)
  return {"advantages": whiten(adv, b["mask"]) if ppo.whiten else adv, "returns": ret}


ESTIMATORS: dict[str, Estimator] = {
    "grpo_outcome": Estimator(_grpo_outcome),
    "grpo_process": Estimator(_grpo_process, process=True),
    "grpo_process_relative": Estimator(_grpo_process_relative, process=True),
    "dr_grpo": Estimator(_dr_grpo),
    "dr_grpo_process": Estimator(_dr_grpo_process, process=True),
    "rloo": Estimator(lambda b, g, cfg, ppo: {"advantages": rloo(b["rewards"], b["mask"], group_size=g)}),
    "gae": Estimator(_gae, values=True),
    "correct": Estimator(lambda b, g, cfg, ppo: {"advantages": correct_indicator(b.get("correct", b["rewards"]),
                                                                                 b["mask"])}),
    "one": Estimator(lambda b, g, cfg, ppo: {"advantages": b["mask"].astype(jnp.float32)}),
}
