"""Estimators and losses against their papers' formulas, written out here in float64 numpy with plain loops:
Dr. GRPO's advantages (Liu et al. 2025, "Understanding R1-Zero-Like Training": the group-mean baseline, no std
scaling), in its outcome and its process-supervised form (DeepSeekMath sec. 4.1.3 with the same change), and PPO's
clipped surrogate and clipped value loss (Schulman et al. 2017, Eq. 7; the value clipping of the PPO baselines that
InstructGPT and DeepSeekMath train with)."""
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath.rl.advantages import ESTIMATORS
from dsmath.rl.config import AdvantageConfig, PPOConfig
from dsmath.rl.losses import LossConfig, ppo_policy_loss, ppo_value_loss

G, N, T = 4, 3, 12  # group size, groups, completion length


def _masks(rng) -> np.ndarray:
  """[B, T] right-padded completion masks of lengths 1..T."""
  lengths = rng.integers(1, T + 1, N * G)
  return (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)


def _steps(rng, mask) -> np.ndarray:
  """[B, T] step ends: random tokens of each completion, its last token always one."""
  ends = (rng.random(mask.shape) < 0.3) * mask
  ends[np.arange(len(mask)), mask.sum(1).astype(int) - 1] = 1
  return ends.astype(np.float32)


def _adv(name, batch) -> np.ndarray:
  out = ESTIMATORS[name].fn({k: jnp.asarray(v) for k, v in batch.items()}, G, AdvantageConfig(), PPOConfig())
  return np.asarray(out["advantages"], np.float64)


def test_dr_grpo_outcome_advantage_is_reward_minus_group_mean():
  rng = np.random.default_rng(0)
  mask = _masks(rng)
  rewards = rng.choice([0.0, 1.0, 0.5], N * G).astype(np.float32)
  rewards[:G] = 1.0  # a group without signal
  want = np.zeros((N * G, T))
  for n in range(N):
    group = rewards[n * G:(n + 1) * G].astype(np.float64)
    for i in range(G):
      for t in range(T):
        want[n * G + i, t] = (group[i] - group.mean()) * mask[n * G + i, t]  # no division by the group's std
  np.testing.assert_allclose(_adv("dr_grpo", {"rewards": rewards, "mask": mask}), want, atol=1e-6)
  assert not _adv("dr_grpo", {"rewards": rewards, "mask": mask})[:G].any()


def test_dr_grpo_process_advantage_sums_mean_centred_step_rewards_from_t_on():
  """r~ = r - mean(R) over every step reward R of the group's outputs (no std); A_{i,t} = sum of r~_i^{index(j)}
  over the steps j of o_i that end at or after t."""
  rng = np.random.default_rng(1)
  mask = _masks(rng)
  ends = _steps(rng, mask)
  step_rewards = (rng.random((N * G, T)) * ends).astype(np.float32)
  step_rewards[G:2 * G] = 0.7 * ends[G:2 * G]  # a group whose step rewards are all equal: no signal
  want = np.zeros((N * G, T))
  for n in range(N):
    rows = range(n * G, (n + 1) * G)
    R = [float(step_rewards[i, t]) for i in rows for t in range(T) if ends[i, t]]
    mean = np.mean(R)
    for i in rows:
      for t in range(T):
        if mask[i, t]:
          want[i, t] = sum(float(step_rewards[i, j]) - mean for j in range(t, T) if ends[i, j])
  got = _adv("dr_grpo_process", {"step_rewards": step_rewards, "step_mask": ends, "mask": mask})
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert not got[G:2 * G].any()
  assert np.abs(want).max() > 0.5  # the case is not trivial


def _ppo_batch(rng):
  mask = _masks(rng)
  old_logp = np.log(rng.uniform(0.05, 0.9, (N * G, T))).astype(np.float32)
  # ratios from 0.6 to 1.5: both sides of the clip range, and inside it
  logp = (old_logp + np.log(rng.uniform(0.6, 1.5, (N * G, T)))).astype(np.float32)
  adv = rng.normal(0, 1, (N * G, T)).astype(np.float32)
  return logp, {"mask": mask, "old_logp": old_logp, "advantages": adv}


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
def test_ppo_clipped_surrogate_loss_value(aggregation):
  """L = -(1/B) sum_i (1/|o_i|) sum_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t), rho_t = pi/pi_old
  ("token": one mean over every token of the batch)."""
  rng = np.random.default_rng(2)
  logp, batch = _ppo_batch(rng)
  eps = 0.2
  per_seq, tokens, clipped = [], [], 0
  for i in range(N * G):
    terms = []
    for t in range(T):
      if batch["mask"][i, t]:
        rho = float(np.exp(np.float64(logp[i, t]) - batch["old_logp"][i, t]))
        a = float(batch["advantages"][i, t])
        terms.append(min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a))
        clipped += min(max(rho, 1 - eps), 1 + eps) * a < rho * a
    per_seq.append(sum(terms) / len(terms))
    tokens += terms
  want = -np.mean(per_seq) if aggregation == "sequence" else -np.mean(tokens)
  loss, metrics = ppo_policy_loss(LossConfig(clip_eps=eps, aggregation=aggregation), jnp.asarray(logp),
                                  {k: jnp.asarray(v) for k, v in batch.items()})
  assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-6)
  assert float(metrics["clip_fraction"]) == pytest.approx(clipped / len(tokens), abs=1e-6)
  assert 0 < clipped < len(tokens)  # the clip is active on some tokens, not all


def test_ppo_clipped_value_loss_value():
  """L^V = (1/2) (1/B) sum_i (1/|o_i|) sum_t max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, -c, c) - R_t)^2)."""
  rng = np.random.default_rng(3)
  mask = _masks(rng)
  old_values = rng.normal(0, 1, (N * G, T)).astype(np.float32)
  values = (old_values + rng.normal(0, 0.4, (N * G, T))).astype(np.float32)  # moves inside and beyond c = 0.2
  returns = rng.normal(0, 1, (N * G, T)).astype(np.float32)
  c = 0.2
  per_seq, clipped_worse, count = [], 0, 0
  for i in range(N * G):
    terms = []
    for t in range(T):
      if mask[i, t]:
        v, v_old, ret = float(values[i, t]), float(old_values[i, t]), float(returns[i, t])
        v_clip = v_old + min(max(v - v_old, -c), c)
        terms.append(max((v - ret) ** 2, (v_clip - ret) ** 2))
        clipped_worse += (v_clip - ret) ** 2 > (v - ret) ** 2
        count += 1
    per_seq.append(sum(terms) / len(terms))
  want = 0.5 * np.mean(per_seq)
  loss, metrics = ppo_value_loss(LossConfig(value_clip=c), jnp.asarray(values), {
      "mask": jnp.asarray(mask), "old_values": jnp.asarray(old_values), "returns": jnp.asarray(returns)})
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert float(metrics["value_clip_fraction"]) == pytest.approx(clipped_worse / count, abs=1e-6)
  assert 0 < clipped_worse < count
