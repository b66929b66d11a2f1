"""The sampler/trainer mismatch logged every RL step: the trainer's log-probs of the rollout tokens against the
sampler's (rl.mu = 1: the update's forward runs at the sampling params), ~0 in float32 on CPU."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import rl
from dsmath.rl.losses import mismatch_metrics
from tests.rl_configs import config


def test_mismatch_metrics_formula():
  logp = jnp.array([[-1.0, -2.0, -0.5], [-0.1, -3.0, 0.0]])
  old = jnp.array([[-1.2, -2.0, -0.4], [-0.1, -2.5, -9.0]])
  m = jnp.array([[1, 1, 1], [1, 1, 0]], jnp.float32)
  got = mismatch_metrics(logp, old, m)
  d = np.array([0.2, 0.0, 0.1, 0.0, 0.5])  # |logp - old| on the 5 masked tokens
  k3 = [np.exp(o - p) - (o - p) - 1 for p, o in [(-1.0, -1.2), (-2.0, -2.0), (-0.5, -0.4), (-0.1, -0.1), (-3.0, -2.5)]]
  assert float(got["mismatch_abs"]) == pytest.approx(d.mean(), rel=1e-6)
  assert float(got["mismatch_kl"]) == pytest.approx(np.mean(k3), rel=1e-5)


def test_sampler_and_trainer_agree_in_float32(tmp_path, rl_parent_run):
  rl.run(config("grpo_toy", rl_parent_run, **{"rl.steps": 2}), tmp_path)
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = [r for r in rows if "mismatch_abs" in r]
  assert len(steps) == 2
  for r in steps:  # the KV-cache decode and the full forward of the update differ only by float rounding
    assert 0.0 <= r["mismatch_abs"] < 1e-4 and abs(r["mismatch_kl"]) < 1e-7  # k3 of a ~1e-7 gap rounds near 0


def test_rollout_correction_needs_the_trainers_old_logp(tmp_path, rl_parent_run):
  from dsmath.config import ConfigError
  with pytest.raises(ConfigError, match=r"config\.loss\.tis='token'.*recompute_old_logp"):
    rl.resolve_rl_config(config("grpo_toy", rl_parent_run, **{"loss.tis": "token"}))
  rl.run(config("grpo_toy", rl_parent_run, **{"rl.steps": 2, "loss.tis": "token", "rollout.recompute_old_logp": True}),
         tmp_path)
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = [r for r in rows if "tis_weight_mean" in r]
  assert len(steps) == 2 and all(abs(r["tis_weight_mean"] - 1.0) < 1e-4 and r["old_logp_gap"] < 1e-4 for r in steps)
  assert all(r["mismatch_abs"] < 1e-5 for r in steps)  # pi_old is the trainer's own: the update starts at ratio 1
