"""The one RL trainer: every method runs from its config; GRPO raises the training reward of a tiny SFT model;
iterative RL resets pi_ref and retrains the reward model with a 10% replay.

One tiny task, tokenizer and SFT policy are built once for the module and shared (one compilation per shape).
"""
import dataclasses
import importlib
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath.rl import trainer
from dsmath.rl import task as task_lib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for configs/

MODEL = {"preset": "tiny", "vocab_size": 384, "hidden_size": 64, "intermediate_size": 192, "num_layers": 2,
         "num_heads": 4, "num_kv_heads": 2, "max_positions": 64}
SFT_STEPS = 45


def _shrink(c, **rl):
  """A config from configs/ scaled to the shared test task (one-step additions of numbers up to 9)."""
  c.model = dict(MODEL)
  c.task.num_train, c.task.num_test = 64, 64
  c.task.tokenizer_type, c.task.tokenizer_vocab = "bpe", 384
  d = c.task.difficulty
  d.min_steps, d.max_steps, d.max_number, d.ops = 1, 1, 9, ("+",)
  c.rl.update(steps=1, prompts_per_step=2, group_size=4, rft_samples=8, ppo_samples=2, max_new_tokens=16,
              sft_warmup_steps=0)
  c.rl.reward_model.update(steps=2, batch=8, samples_per_question=2, shepherd_completions=2)
  c.rl.update(**rl)
  return c


def _config(name: str, **rl):
  return _shrink(importlib.import_module(f"configs.{name}").get_config(), **rl)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return task_lib.build_task(_config("grpo_toy"), str(tmp_path_factory.mktemp("task")))


@pytest.fixture(scope="module")
def sft_params(task, tmp_path_factory):
  """The shared SFT policy: SFT_STEPS steps on gold solutions (partly right on the training questions)."""
  tr = trainer.RLTrainer(_config("sft_toy"), str(tmp_path_factory.mktemp("sft")), task=task)
  tr.sft(SFT_STEPS, 3e-3, 32)
  return jax.tree.map(np.asarray, tr.params)


def _trainer(config, tmp_path, task, params):
  return trainer.RLTrainer(config, str(tmp_path), task=task, policy_params=jax.tree.map(jnp.asarray, params))


METRIC_KEYS = ("reward_mean", "reward_std", "zero_std_group_fraction", "entropy", "completion_len_mean",
               "completion_len_max", "truncated_fraction", "rollout_s", "scoring_s", "update_s", "tokens_per_s")


@pytest.mark.parametrize("name,extra", [
    ("sft_toy", ()), ("rft_toy", ()), ("online_rft_toy", ()), ("dpo_toy", ("margin", "reward_accuracy")),
    ("ppo_toy", ("value_loss", "clip_fraction")), ("grpo_toy", ("kl_ref", "clip_fraction")),
    ("grpo_ps_toy", ("kl_ref",)), ("grpo_orm_toy", ("kl_ref",)), ("grpo_prm_toy", ("kl_ref",))])
def test_every_method_runs_from_its_config(tmp_path, task, sft_params, name, extra):
  c = _config(name)
  tr = _trainer(c, tmp_path, task, sft_params)
  out = tr.run()
  assert out["steps"] == 1 and (tmp_path / "rl_metrics.jsonl").exists()
  row = tr.history[-1]
  online = trainer.METHODS[c.rl.method].data == "policy"
  keys = (METRIC_KEYS if online else ()) + ("loss", "grad_norm") + tuple(extra)
  for k in keys:
    assert k in row and math.isfinite(row[k]), (name, k, row)
  assert row["skipped"] == 0
  if c.rl.reward in ("orm", "prm"):
    rm = [h for h in tr.history if "rm_loss" in h]
    assert rm and math.isfinite(rm[0]["rm_loss"]) and rm[0]["rm_replay_share"] == 0.0
  if c.rl.method in ("rft", "dpo"):
    off = tr.history[0]
    assert off["offline_rows"] > 0 and off["offline_correct"] > 0


def test_iterative_rl_resets_ref_and_replays_reward_model_data(tmp_path, task, sft_params):
  """Algorithm 1: pi_ref <- pi_theta at each iteration start; the RM is retrained on fresh samples + 10% replay."""
  c = _config("grpo_iterative_toy", iterations=2, steps=1)
  tr = _trainer(c, tmp_path, task, sft_params)
  seen = []

  def on_iteration(it, ref, pol):
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(pol)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    seen.append(jax.tree.map(np.array, ref))

  tr.run(on_iteration=on_iteration)
  assert len(seen) == 2
  # the policy moved during iteration 0, so iteration 1's reference is a new one
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(seen[0]), jax.tree.leaves(seen[1])))
  steps = [h for h in tr.history if "kl_ref" in h]
  assert [h["iteration"] for h in steps] == [0, 1]
  assert all(abs(h["kl_ref"]) < 1e-6 for h in steps)  # first step of an iteration: pi_theta = pi_ref exactly
  rm = [h for h in tr.history if "rm_loss" in h]
  assert len(rm) == 2  # before RL, then after iteration 0 (the last iteration's RM would never be used)
  assert rm[0]["rm_rows_replay"] == 0
  assert rm[1]["rm_rows_replay"] > 0 and abs(rm[1]["rm_replay_share"] - 0.1) < 0.02, rm[1]
  # the replayed rows come from the first round's data
  data, first = tr.rm_last_data, tr.rm_data[0]
  n_new = int(rm[1]["rm_rows_new"])
  for row in data["completion"][n_new:]:
    assert (first["completion"] == row).all(axis=1).any()


def test_grpo_raises_training_reward_of_a_tiny_sft_model(tmp_path, task, sft_params):
  """A few GRPO steps (fixed seed) raise the mean reward of the SFT policy on its training questions.

  GRPO trains on 8 questions, all 8 in every step (G = 8); the reward is measured with 16 samples per question.
  """
  c = _config("grpo_toy", steps=8, prompts_per_step=8, group_size=8)
  c.optimizer.peak_lr = 3e-4
  questions = dataclasses.replace(task, train=task.train[:8])
  tr = _trainer(c, tmp_path, questions, sft_params)
  before = tr.evaluate(questions.train, num_samples=16)
  assert 0.1 < before < 0.95, before  # partly right: groups carry signal
  tr.run()
  after = tr.evaluate(questions.train, num_samples=16)
  rewards = [h["reward_mean"] for h in tr.history]
  print(f"GRPO: training reward {before:.3f} -> {after:.3f}; per-step rollout rewards {rewards}")
  assert after > before, (before, after, rewards)


def test_held_out_accuracy_every_n_steps_leaves_training_unchanged(tmp_path, task, sft_params):
  """rl.eval_every = 2 over 3 steps: test_accuracy at steps 0, 2 and 3 (the last), from the params of that step; the
  evaluations draw from keys of their own, so the trained policy equals a run without them."""
  held_out = task.test[:8]
  c = _config("grpo_toy", steps=3, eval_every=2, eval_samples=2)
  tr = _trainer(c, tmp_path / "eval", task, sft_params)
  out = tr.run(eval_problems=held_out)
  logged = {h["step"]: h["test_accuracy"] for h in tr.history if "test_accuracy" in h}
  assert sorted(logged) == [0, 2, 3], tr.history
  assert (out["test_accuracy_before"], out["test_accuracy_after"]) == (logged[0], logged[3])
  assert all(0.0 <= v <= 1.0 for v in logged.values())
  assert logged[3] == tr.evaluate(held_out, 2, tag=3)  # the final policy, the same key
  fresh = _trainer(c, tmp_path / "fresh", task, sft_params)
  assert logged[0] == fresh.evaluate(held_out, 2, tag=0)  # the SFT policy
  plain = _trainer(_config("grpo_toy", steps=3), tmp_path / "plain", task, sft_params)
  plain.run()
  for a, b in zip(jax.tree.leaves(tr.params), jax.tree.leaves(plain.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_config_keys(tmp_path, task):
  with pytest.raises(KeyError, match="rl.method"):
    trainer.RLTrainer(_config("grpo_toy", method="reinforce"), str(tmp_path), task=task)
  with pytest.raises(ValueError, match="process reward"):
    trainer.RLTrainer(_config("ppo_toy", reward="step_check"), str(tmp_path), task=task)
  c = _config("grpo_toy")
  c.rl.bogus = 1
  with pytest.raises(KeyError, match="bogus"):
    trainer.run(c, str(tmp_path))
