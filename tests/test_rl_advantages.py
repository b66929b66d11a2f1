"""GRPO outcome/process advantages on hand examples, GAE against a direct loop, PPO's shaped rewards."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import rl


def test_outcome_hand_example_sample_std():
  # one group of 4: mean 0.5, sample std sqrt(1/3); lengths 3, 2, 1, 3 of T = 3
  rewards = jnp.array([1.0, 0.0, 0.0, 1.0])
  mask = jnp.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], jnp.float32)
  adv = rl.grpo_outcome(rewards, mask, group_size=4, eps=0.0)
  a = 0.5 / math.sqrt(1.0 / 3.0)
  want = np.array([[a, a, a], [-a, -a, 0], [-a, 0, 0], [a, a, a]])
  np.testing.assert_allclose(adv, want, rtol=1e-6)


def test_outcome_population_std_and_no_scaling_and_groups_independent():
  rewards = jnp.array([1.0, 0.0, 2.0, 4.0])  # two groups of 2
  mask = jnp.ones((4, 2))
  adv = rl.grpo_outcome(rewards, mask, group_size=2, eps=0.0, ddof=0)
  np.testing.assert_allclose(adv[:, 0], [1.0, -1.0, -1.0, 1.0], rtol=1e-6)
  adv = rl.grpo_outcome(rewards, mask, group_size=2, scale_std=False)
  np.testing.assert_allclose(adv[:, 0], [0.5, -0.5, -1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("scale_std", [True, False])
def test_outcome_all_equal_rewards_zero_no_nan(scale_std):
  rewards = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
  adv = rl.grpo_outcome(rewards, jnp.ones((6, 5)), group_size=3, scale_std=scale_std)
  assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv) == 0.0)


def test_outcome_rejects_partial_group():
  with pytest.raises(ValueError, match="group_size"):
    rl.grpo_outcome(jnp.ones(5), jnp.ones((5, 2)), group_size=2)


def test_process_hand_example():
  # o1: 4 tokens, steps end at t=1 (r=1) and t=3 (r=0); o2: 3 tokens, one step ending at t=2 (r=1).
  step_r = jnp.array([[0, 1, 0, 0], [0, 0, 1, 0]], jnp.float32)
  step_m = jnp.array([[0, 1, 0, 1], [0, 0, 1, 0]], jnp.float32)
  mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], jnp.float32)
  adv = rl.grpo_process(step_r, step_m, mask, group_size=2, eps=0.0)
  # R = {1, 0, 1}: mean 2/3, sample std sqrt(1/3); normalised 1 -> (1/3)/sqrt(1/3), 0 -> (-2/3)/sqrt(1/3)
  hi, lo = (1 / 3) / math.sqrt(1 / 3), (-2 / 3) / math.sqrt(1 / 3)
  want = np.array([[hi + lo, hi + lo, lo, lo], [hi, hi, hi, 0.0]])
  np.testing.assert_allclose(adv, want, rtol=1e-6)


def _process_reference(step_r, step_m, mask, g, eps, ddof):
  out = np.zeros_like(step_r)
  for start in range(0, len(step_r), g):
    rows = range(start, start + g)
    vals = [step_r[i, t] for i in rows for t in range(step_r.shape[1]) if step_m[i, t]]
    mean = np.mean(vals)
    std = np.sqrt(np.sum((np.array(vals) - mean) ** 2) / max(len(vals) - ddof, 1))
    for i in rows:
      for t in range(step_r.shape[1]):
        if mask[i, t]:
          out[i, t] = sum((step_r[i, s] - mean) / (std + eps) for s in range(t, step_r.shape[1]) if step_m[i, s])
  return out


def test_process_random_against_loop():
  rng = np.random.default_rng(0)
  b, t, g = 6, 9, 3
  lengths = rng.integers(1, t + 1, b)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  step_m = (rng.random((b, t)) < 0.4).astype(np.float32) * mask
  step_m[np.arange(b), lengths - 1] = 1.0  # the last token always ends a step
  step_r = rng.random((b, t)).astype(np.float32) * step_m
  adv = rl.grpo_process(jnp.array(step_r), jnp.array(step_m), jnp.array(mask), group_size=g, eps=1e-4)
  np.testing.assert_allclose(adv, _process_reference(step_r, step_m, mask, g, 1e-4, 1), rtol=1e-5, atol=1e-6)


def test_process_all_equal_zero_no_nan():
  step_m = jnp.array([[1, 0, 1], [0, 1, 0]], jnp.float32)
  adv = rl.grpo_process(step_m * 0.7, step_m, jnp.ones((2, 3)), group_size=2)
  assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv) == 0.0)


def _gae_reference(r, v, lengths, gamma, lam):
  adv = np.zeros_like(r)
  for b in range(len(r)):
    last = 0.0
    for t in reversed(range(lengths[b])):
      next_v = v[b, t + 1] if t + 1 < lengths[b] else 0.0
      delta = r[b, t] + gamma * next_v - v[b, t]
      last = delta + gamma * lam * last
      adv[b, t] = last
  return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_against_loop(gamma, lam):
  rng = np.random.default_rng(1)
  b, t = 5, 11
  lengths = rng.integers(1, t + 1, b)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  r = rng.normal(size=(b, t)).astype(np.float32)
  v = rng.normal(size=(b, t)).astype(np.float32)
  adv, ret = rl.gae(jnp.array(r), jnp.array(v), jnp.array(mask), gamma, lam)
  want = _gae_reference(r, v, lengths, gamma, lam)
  np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ret, (want + v) * mask, rtol=1e-5, atol=1e-5)
  if gamma == lam == 1.0:  # Monte-Carlo: A_t = sum_{s >= t} r_s - V_t
    mc = np.flip(np.cumsum(np.flip(r * mask, 1), 1), 1) - v
    np.testing.assert_allclose(adv, mc * mask, rtol=1e-5, atol=1e-5)


def test_ppo_token_rewards_hand():
  mask = jnp.array([[1, 1, 1], [1, 0, 0]], jnp.float32)
  old = jnp.array([[-1.0, -2.0, -0.5], [-1.0, -9.0, -9.0]])
  ref = jnp.array([[-1.5, -2.0, -1.0], [-0.5, 0.0, 0.0]])
  r = rl.ppo_token_rewards(jnp.array([1.0, 0.3]), old, ref, mask, beta=0.1)
  want = np.array([[-0.05, 0.0, 1.0 - 0.05], [0.3 + 0.05, 0.0, 0.0]])
  np.testing.assert_allclose(r, want, rtol=1e-6, atol=1e-7)


def test_whiten():
  x = jnp.array([[1.0, 2.0, 99.0], [3.0, 4.0, 5.0]])
  m = jnp.array([[1, 1, 0], [1, 1, 1]], jnp.float32)
  w = np.asarray(rl.whiten(x, m))
  vals = w[np.asarray(m) > 0]
  assert abs(vals.mean()) < 1e-6 and abs(vals.std() - 1.0) < 1e-4 and w[0, 2] == 0.0


def test_rloo_leave_one_out_baseline():
  """RLOO: A_i = r_i - mean of the other G - 1 rewards of the question (Ahmadian et al. 2024, Eq. 5)."""
  rewards = jnp.array([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0, 0.3, 0.3, 0.3, 0.3])
  mask = jnp.ones((12, 3))
  adv = np.asarray(rl.rloo(rewards, mask, group_size=4))
  r = np.asarray(rewards).reshape(3, 4)
  want = np.array([[r[g, i] - np.delete(r[g], i).mean() for i in range(4)] for g in range(3)]).reshape(-1)
  np.testing.assert_allclose(adv[:, 0], want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(adv, np.repeat(want[:, None], 3, 1), rtol=1e-6, atol=1e-6)
  assert np.all(adv[8:] == 0.0)  # a group of equal rewards: exactly no signal (not a rounding error)
  with pytest.raises(ValueError, match="group_size"):
    rl.rloo(rewards, mask, group_size=1)


def test_registry_estimators_dr_grpo_and_rft():
  """The registry entries the RL loop calls: Dr. GRPO leaves the std in; RFT's coefficient is I(o)."""
  from dsmath.rl.config import AdvantageConfig, PPOConfig
  rewards = jnp.array([1.0, 0.0, 0.0, 0.0])
  mask = jnp.array([[1, 1], [1, 0], [1, 1], [1, 1]], jnp.float32)
  batch = {"rewards": rewards, "mask": mask}
  est = rl.ESTIMATORS
  dr = est["dr_grpo"].fn(batch, 4, AdvantageConfig(), PPOConfig())["advantages"]
  np.testing.assert_allclose(dr[:, 0], [0.75, -0.25, -0.25, -0.25], rtol=1e-6)
  grpo = est["grpo_outcome"].fn(batch, 4, AdvantageConfig(eps=0.0), PPOConfig())["advantages"]
  np.testing.assert_allclose(grpo[:, 0], np.array([0.75, -0.25, -0.25, -0.25]) / 0.5, rtol=1e-6)  # sample std 0.5
  np.testing.assert_allclose(est["correct"].fn(batch, 4, None, None)["advantages"], mask * np.array([[1], [0], [0],
                                                                                                      [0]]))
  assert est["grpo_process"].process and est["gae"].values and not est["rloo"].process
