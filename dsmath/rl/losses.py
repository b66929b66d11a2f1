"""Policy losses of the unified paradigm (paper sec. 5.2.1, appendix A.1), their gradient coefficients, and beyond
the paper DAPO (decoupled clip, token-level aggregation), Dr. GRPO (a constant normaliser) and GSPO (a sequence-level
importance ratio) as entries of the same registry.

Every method's gradient has the form
  grad J = E_{(q, o) ~ D} [ (1/|o|) sum_t GC(q, o, t) * grad log pi_theta(o_t | q, o_<t) ].
`POLICY_LOSSES[name](cfg, logp, batch) -> (loss, metrics)` is the loss a trainer minimises (loss = -J);
`GRADIENT_COEFFICIENTS[name](cfg, logp, batch) -> GC [B, T]` is that method's coefficient as the paper derives it, and
`surrogate_objective` turns a GC into (1/|o|) sum_t stop_gradient(GC) * log pi, whose gradient equals -grad(loss).
The tests check that identity for every method; the trainer only ever uses the losses.

Inputs (all [B, T], right-padded completions; rows of a GRPO batch are groups of G consecutive outputs):
  logp: log pi_theta(o_t | q, o_<t) of the sampled tokens (differentiable).
  batch["mask"]: 1 on the completion tokens the policy wrote (0 on padding and on tool output blocks it only read).
  batch["old_logp"]: log pi_old from the rollout (PPO, GRPO).   batch["ref_logp"]: log pi_ref (GRPO, DPO).
  batch["advantages"]: [B, T] (PPO, GRPO).   batch["weights"]: [B] per-output coefficient (SFT = 1, RFT = I(o)).
  DPO: rows [0, B/2) are the chosen outputs o+, rows [B/2, B) the rejected o- of the same questions, in order.
"""
import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

AGGREGATIONS = ("sequence", "token", "sequence_sum_norm")
ROLLOUT_CORRECTIONS = ("off", "token", "sequence_mask")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss hyper-parameters (hashable: pass it as a static argument under jit). Defaults are the paper's.

  clip_eps: PPO/GRPO ratio clip epsilon (the lower side, 1 - eps).
  clip_eps_high: the upper side (1 + eps_high); None = clip_eps (symmetric, the paper). DAPO's "clip-higher".
  beta: GRPO's KL coefficient (inside the per-token sum); PPO puts its KL in the reward (advantages.ppo_token_rewards).
  aggregation: "sequence" = the paper's (1/G) sum_i (1/|o_i|) sum_t; "token" = sum over all tokens / number of tokens
    (DAPO); "sequence_sum_norm" = (1/G) sum_i (1/max_len) sum_t (Dr. GRPO's constant normaliser).
  max_len: the constant for "sequence_sum_norm" (the paper's maximum completion length).
  dpo_beta, dpo_length_normalize: DPO's beta and whether log-ratios are means over tokens (the paper's Eq. 13) or sums
    (the original DPO).
  value_clip: PPO value-loss clip range around the rollout's values.
  """
  clip_eps: float = 0.2
  clip_eps_high: float | None = None
  beta: float = 0.04
  aggregation: str = "sequence"
  max_len: int = 1024
  dpo_beta: float = 0.1
  dpo_length_normalize: bool = True
  value_clip: float = 0.2
  # Rollout correction (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"):
  # with rollout.recompute_old_logp the batch holds the trainer's pi_old and the sampler's log-probs of the same
  # tokens; "token" weights each token's term by min(pi_old / pi_sampler, tis_cap) (truncated importance sampling),
  # "sequence_mask" drops outputs whose sequence ratio prod(pi_old / pi_sampler) is outside [1 / tis_cap, tis_cap].
  tis: str = "off"
  tis_cap: float = 2.0

  def __post_init__(self):
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"rl loss aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
    if not 0.0 <= self.clip_eps < 1.0:
      raise ValueError(f"rl loss clip_eps must be in [0, 1), got {self.clip_eps}")
    if self.clip_eps_high is not None and not self.clip_eps_high >= 0.0:
      raise ValueError(f"rl loss clip_eps_high must be >= 0, got {self.clip_eps_high}")
    if self.beta < 0 or self.max_len < 1:
      raise ValueError(f"rl loss beta must be >= 0 and max_len >= 1, got {self.beta}, {self.max_len}")
    if self.tis not in ROLLOUT_CORRECTIONS or not self.tis_cap > 1.0:
      raise ValueError(f"rl loss tis must be one of {ROLLOUT_CORRECTIONS} and tis_cap > 1, got {self.tis!r}, "
                       f"{self.tis_cap}")

  @property
  def eps_high(self) -> float:
    return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


def _lengths(mask: jax.Array) -> jax.Array:
  return jnp.maximum(mask.sum(axis=1), 1.0)


def aggregate(x: jax.Array, mask: jax.Array, aggregation: str = "sequence", max_len: int = 1024) -> jax.Array:
  """Reduces per-token values [B, T] to a scalar with one of AGGREGATIONS."""
  m = mask.astype(jnp.float32)
  if aggregation == "sequence":
    return jnp.mean((x * m).sum(axis=1) / _lengths(m))
  if aggregation == "token":
    return (x * m).sum() / jnp.maximum(m.sum(), 1.0)
  if aggregation == "sequence_sum_norm":
    return jnp.mean((x * m).sum(axis=1) / max_len)
  raise ValueError(f"rl loss aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def _masked_mean(x, m):
  return (x * m).sum() / jnp.maximum(m.sum(), 1.0)


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """The unbiased, non-negative estimator of KL[pi_theta || pi_ref]: pi_ref/pi - log(pi_ref/pi) - 1 (per token)."""
  d = ref_logp - logp
  return jnp.exp(d) - d - 1.0


def _clipped_surrogate(logp, old_logp, adv, eps, eps_high=None):
  """min(rho A, clip(rho, 1-eps, 1+eps_high) A) per token, the ratio, and where the clipped side is active."""
  ratio = jnp.exp(logp - old_logp)
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - eps, 1.0 + (eps if eps_high is None else eps_high)) * adv
  return jnp.minimum(unclipped, clipped), ratio, clipped < unclipped


# ----------------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------------


def _weights(logp, batch):
  """SFT-family per-token coefficients [B, T]: batch["advantages"] (the RL loop's estimator "one" / "correct"), else
  batch["weights"] [B] per output, else 1."""
  if "advantages" in batch:
    return batch["advantages"].astype(jnp.float32)
  w = batch.get("weights")
  w = jnp.ones(logp.shape[0], jnp.float32) if w is None else w.astype(jnp.float32)
  return jnp.broadcast_to(w[:, None], logp.shape)


def sft_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """SFT / RFT / Online RFT: -(1/B) sum_i w_i (1/|o_i|) sum_t log pi(o_t); w = 1 (SFT) or I(o_i correct) (RFT)."""
  m = batch["mask"].astype(jnp.float32)
  w = _weights(logp, batch)
  nll = -aggregate(logp * w, m, cfg.aggregation, cfg.max_len)
  return nll, {"nll_per_token": -_masked_mean(logp, m), "weight_mean": _masked_mean(w, m)}


def _dpo_parts(cfg: LossConfig, logp, batch):
  m = batch["mask"].astype(jnp.float32)
  per_seq = ((logp - batch["ref_logp"]) * m).sum(axis=1)
  if cfg.dpo_length_normalize:
    per_seq = per_seq / _lengths(m)
  half = logp.shape[0] // 2
  if 2 * half != logp.shape[0]:
    raise ValueError(f"DPO batch needs chosen rows then rejected rows (an even count), got {logp.shape[0]} rows")
  z = cfg.dpo_beta * (per_seq[:half] - per_seq[half:])
  return z, per_seq, half


def dpo_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """-(1/P) sum_pairs log sigmoid(beta * (Delta(o+) - Delta(o-))), Delta = (1/|o|) sum_t log(pi/pi_ref) (Eq. 13)."""
  z, per_seq, half = _dpo_parts(cfg, logp, batch)
  loss = -jnp.mean(jax.nn.log_sigmoid(z))
  return loss, {"reward_accuracy": jnp.mean((z > 0).astype(jnp.float32)), "margin": jnp.mean(z),
                "chosen_logratio": jnp.mean(per_seq[:half]), "rejected_logratio": jnp.mean(per_seq[half:])}


def ppo_policy_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """-(1/|o|) sum_t min(rho_t A_t, clip(rho_t) A_t), rho = pi/pi_old, A from GAE on KL-shaped rewards."""
  m = batch["mask"].astype(jnp.float32)
  obj, ratio, clipped = _clipped_surrogate(logp, batch["old_logp"], batch["advantages"], cfg.clip_eps)
  loss = -aggregate(obj, m, cfg.aggregation, cfg.max_len)
  return loss, {"clip_fraction": _masked_mean(clipped.astype(jnp.float32), m), "ratio_mean": _masked_mean(ratio, m),
                "approx_kl_old": _masked_mean(batch["old_logp"] - logp, m),
                **mismatch_metrics(logp, batch["old_logp"], m)}


def mismatch_metrics(logp: jax.Array, old_logp: jax.Array, m: jax.Array) -> dict:
  """How far the trainer's log-probs of the rollout tokens are from pi_old's (the sampler's, unless
  rollout.recompute_old_logp replaced them): mean |delta| and the k3 estimate of KL(pi_trainer || pi_old). At the
  first update of a step (rl.mu = 1: the only one) the trainer's params are the sampler's, so this is the
  sampler/trainer numerical mismatch (float32 on CPU: ~0)."""
  logp = jax.lax.stop_gradient(logp)
  return {"mismatch_abs": _masked_mean(jnp.abs(logp - old_logp), m),
          "mismatch_kl": _masked_mean(kl_k3(logp, old_logp), m)}


def rollout_correction(cfg: LossConfig, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
  """Per-token weights [B, T] of the policy-gradient term under LossConfig.tis (no gradient flows through them):
  token: w_t = min(pi_old(o_t) / pi_sampler(o_t), cap); sequence_mask: w = 1 for an output whose
  prod_t pi_old / pi_sampler lies in [1 / cap, cap], else 0; off: 1."""
  m = batch["mask"].astype(jnp.float32)
  if cfg.tis == "off":
    return jnp.ones_like(m), {}
  log_ratio = (batch["old_logp"] - batch["sampler_logp"]) * m
  if cfg.tis == "token":
    w = jnp.minimum(jnp.exp(log_ratio), cfg.tis_cap)
    return w, {"tis_weight_mean": _masked_mean(w, m), "tis_capped_fraction": _masked_mean(
        (jnp.exp(log_ratio) > cfg.tis_cap).astype(jnp.float32), m)}
  seq = log_ratio.sum(axis=1)
  keep = (jnp.abs(seq) <= jnp.log(cfg.tis_cap)).astype(jnp.float32)
  return jnp.broadcast_to(keep[:, None], m.shape), {"tis_masked_fraction": 1.0 - jnp.mean(keep)}


def _grpo_family(cfg: LossConfig, logp, batch, aggregation: str):
  m = batch["mask"].astype(jnp.float32)
  obj, ratio, clipped = _clipped_surrogate(logp, batch["old_logp"], batch["advantages"], cfg.clip_eps, cfg.eps_high)
  weight, tis_metrics = rollout_correction(cfg, batch)
  obj = obj * weight
  metrics = {"clip_fraction": _masked_mean(clipped.astype(jnp.float32), m), "ratio_mean": _masked_mean(ratio, m),
             "pg_objective": aggregate(obj, m, aggregation, cfg.max_len),
             **mismatch_metrics(logp, batch["old_logp"], m), **tis_metrics}
  if cfg.beta > 0:  # a KL-free objective (DAPO) never reads pi_ref, so no reference model is kept
    kl = kl_k3(logp, batch["ref_logp"])
    obj = obj - cfg.beta * kl
    metrics["kl_ref"] = _masked_mean(kl, m)
  return -aggregate(obj, m, aggregation, cfg.max_len), metrics


def grpo_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """The paper's GRPO objective (Eq. 21 / sec. 4.1.1), negated:

  J = (1/G) sum_i (1/|o_i|) sum_t { min(rho A, clip(rho, 1-eps, 1+eps) A) - beta * D_KL },
  rho = pi_theta/pi_old per token, D_KL = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1 per token.
  """
  return _grpo_family(cfg, logp, batch, cfg.aggregation)


def dapo_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """DAPO (Yu et al. 2025, Eq. 8): clip(rho, 1 - eps_low, 1 + eps_high) and a token-level mean over every token of
  the group, J = (1 / sum_i |o_i|) sum_i sum_t min(rho A, clip(rho) A); the KL term only if beta > 0 (DAPO: 0)."""
  return _grpo_family(cfg, logp, batch, "token")


def dr_grpo_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """Dr. GRPO (Liu et al. 2025): GRPO's clipped objective with the per-output 1/|o_i| replaced by one constant
  1/max_len, J = (1/G) sum_i (1/L) sum_t {...}, removing the length bias."""
  return _grpo_family(cfg, logp, batch, "sequence_sum_norm")


def gspo_loss(cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]):
  """GSPO (Zheng et al. 2025, Eq. 5-7): one importance ratio per output, the length-normalised sequence likelihood
  ratio s_i = (pi_theta(o_i|q) / pi_old(o_i|q))^(1/|o_i|), clipped at the sequence level:
  J = (1/G) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i), A_i the output's advantage; minus
  beta * the sequence-mean KL to pi_ref when beta > 0."""
  m = batch["mask"].astype(jnp.float32)
  lengths = _lengths(m)
  log_s = ((logp - batch["old_logp"]) * m).sum(axis=1) / lengths
  adv = (batch["advantages"] * m).sum(axis=1) / lengths  # outcome advantages are constant over an output's tokens
  s = jnp.exp(log_s)
  unclipped = s * adv
  clipped_obj = jnp.clip(s, 1.0 - cfg.clip_eps, 1.0 + cfg.eps_high) * adv
  obj = jnp.minimum(unclipped, clipped_obj)
  metrics = {"clip_fraction": jnp.mean((clipped_obj < unclipped).astype(jnp.float32)), "ratio_mean": jnp.mean(s),
             "pg_objective": jnp.mean(obj), **mismatch_metrics(logp, batch["old_logp"], m)}
  if cfg.beta > 0:
    kl = kl_k3(logp, batch["ref_logp"])
    obj = obj - cfg.beta * (kl * m).sum(axis=1) / lengths
    metrics["kl_ref"] = _masked_mean(kl, m)
  return -jnp.mean(obj), metrics


def ppo_value_loss(cfg: LossConfig, values: jax.Array, batch: Mapping[str, jax.Array]):
  """Clipped value loss: 0.5 * max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2), aggregated like the policy."""
  m = batch["mask"].astype(jnp.float32)
  old, ret = batch["old_values"], batch["returns"]
  v_clipped = old + jnp.clip(values - old, -cfg.value_clip, cfg.value_clip)
  l1, l2 = (values - ret) ** 2, (v_clipped - ret) ** 2
  loss = 0.5 * aggregate(jnp.maximum(l1, l2), m, cfg.aggregation, cfg.max_len)
  return loss, {"value_clip_fraction": _masked_mean((l2 > l1).astype(jnp.float32), m),
                "value_mean": _masked_mean(values, m), "return_mean": _masked_mean(ret, m)}


POLICY_LOSSES: dict[str, Callable] = {
    "sft": sft_loss,
    "rft": sft_loss,  # same loss; RFT's data are the correct samples of the SFT model (weights = I(o))
    "online_rft": sft_loss,  # ... sampled from the current policy instead
    "dpo": dpo_loss,
    "ppo": ppo_policy_loss,
    "grpo": grpo_loss,
    "dapo": dapo_loss,
    "dr_grpo": dr_grpo_loss,
    "gspo": gspo_loss,
}

# What each loss reads besides the log-probs (the loop keeps a reference model only when a loss reads ref_logp).
LOSS_INPUTS: dict[str, tuple[str, ...]] = {
    "sft": ("advantages",), "rft": ("advantages",), "online_rft": ("advantages",), "dpo": ("ref_logp",),
    "ppo": ("old_logp", "advantages"), "grpo": ("old_logp", "advantages", "ref_logp"),
    "dapo": ("old_logp", "advantages", "ref_logp"), "dr_grpo": ("old_logp", "advantages", "ref_logp"),
    "gspo": ("old_logp", "advantages", "ref_logp"),
}


def reads_reference(name: str, cfg: LossConfig) -> bool:
  """Whether POLICY_LOSSES[name] reads pi_ref's log-probs under cfg (the GRPO family only when beta > 0)."""
  return "ref_logp" in LOSS_INPUTS[name] and (name == "dpo" or cfg.beta > 0)

# ----------------------------------------------------------------------------------------------------------------------
# Gradient coefficients (appendix A.1) and the surrogate they define
# ----------------------------------------------------------------------------------------------------------------------


def gc_sft(cfg, logp, batch):
  """SFT: GC = 1; RFT / Online RFT: GC = I(o) (Eq. 10), carried by the advantages (or batch["weights"])."""
  return _weights(logp, batch) * batch["mask"]


def gc_dpo(cfg, logp, batch):
  """Eq. 14: GC = beta * sigmoid(beta * (Delta(o-) - Delta(o+))), positive on o+, negative on o-.

  With length normalisation off (plain DPO sums), the (1/|o|) of the surrogate is undone by a factor |o|.
  """
  z, _, half = _dpo_parts(cfg, logp, batch)
  g = cfg.dpo_beta * jax.nn.sigmoid(-z)
  gc = jnp.concatenate([g, -g])[:, None] * batch["mask"]
  if not cfg.dpo_length_normalize:
    gc = gc * _lengths(batch["mask"])[:, None]
  return gc


def _gc_clipped(cfg, logp, batch):
  """rho_t A_t where the unclipped side of the min is active, else 0 (equals A_t when pi_old = pi_theta, mu = 1)."""
  _, ratio, clipped = _clipped_surrogate(logp, batch["old_logp"], batch["advantages"], cfg.clip_eps, cfg.eps_high)
  return jnp.where(clipped, 0.0, ratio * batch["advantages"])


def gc_ppo(cfg, logp, batch):
  """Eq. 18: GC = A_t (GAE), times rho_t where unclipped, when pi_old differs from pi_theta."""
  return _gc_clipped(cfg, logp, batch) * batch["mask"]


def gc_grpo(cfg, logp, batch):
  """Eq. 21: GC = A_{i,t} + beta * (pi_ref/pi_theta - 1) (the first term times rho where unclipped)."""
  gc = _gc_clipped(cfg, logp, batch)
  if cfg.beta > 0:
    gc = gc + cfg.beta * (jnp.exp(batch["ref_logp"] - logp) - 1.0)
  return gc * batch["mask"]


def gc_gspo(cfg, logp, batch):
  """GSPO: grad s_i = s_i (1/|o_i|) sum_t grad log pi(o_t), so GC_t = s_i A_i where the sequence is unclipped (0
  where clipped), plus GRPO's KL coefficient beta * (pi_ref/pi_theta - 1) when beta > 0."""
  m = batch["mask"].astype(jnp.float32)
  lengths = _lengths(m)
  s = jnp.exp(((logp - batch["old_logp"]) * m).sum(axis=1) / lengths)
  adv = (batch["advantages"] * m).sum(axis=1) / lengths
  clipped = jnp.clip(s, 1.0 - cfg.clip_eps, 1.0 + cfg.eps_high) * adv < s * adv
  gc = jnp.broadcast_to(jnp.where(clipped, 0.0, s * adv)[:, None], logp.shape)
  if cfg.beta > 0:
    gc = gc + cfg.beta * (jnp.exp(batch["ref_logp"] - logp) - 1.0)
  return gc * m


GRADIENT_COEFFICIENTS: dict[str, Callable] = {
    "sft": gc_sft, "rft": gc_sft, "online_rft": gc_sft, "dpo": gc_dpo, "ppo": gc_ppo, "grpo": gc_grpo,
    "dapo": gc_grpo, "dr_grpo": gc_grpo, "gspo": gc_gspo,
}
# The reduction each loss is defined by (its config's aggregation records it; the surrogate uses the same one).
FIXED_AGGREGATION = {"dapo": "token", "dr_grpo": "sequence_sum_norm", "gspo": "sequence"}
# The rows a loss trains on: DPO's (chosen, rejected) pairs; every other loss single outputs.
LOSS_DATA = {"dpo": "pairs"}


def surrogate_objective(method: str, cfg: LossConfig, logp: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
  """J_sur = E[(1/|o|) sum_t stop_gradient(GC(q, o, t)) * log pi(o_t)] with the method's own batch reduction.

  grad J_sur = -grad loss, for every method in POLICY_LOSSES. DPO averages over pairs (each pair contributes both
  its outputs), everything else over outputs.
  """
  gc = jax.lax.stop_gradient(GRADIENT_COEFFICIENTS[method](cfg, logp, batch))
  m = batch["mask"].astype(jnp.float32)
  if method == "dpo":
    return 2.0 * aggregate(gc * logp, m, "sequence")
  return aggregate(gc * logp, m, FIXED_AGGREGATION.get(method, cfg.aggregation), cfg.max_len)
