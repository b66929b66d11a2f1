"""The RL step's rollout with continuous batching (rollout.batching = "continuous": rollout.max_rows cache slots
refilled as rows end, dsmath.sample.continuous) against static batching (chunks of max_rows rows, each decoded until
its longest row ends): the same completions, lengths and truncation flags, and the sampler's log-probs to float
rounding, from the RL tests' SFT parent, whose rows end at many lengths. "auto" picks continuous only when there are
more completions than slots."""
import jax
import numpy as np
import pytest

from dsmath import model, rl
from dsmath.model import sharding
from dsmath.runs import load_run
from tests.rl_configs import config

PROMPTS, G, SLOTS = 4, 4, 4


def _step(parent, batching: str, max_rows: int = SLOTS):
  run = rl.resolve_rl_config(config("grpo_toy", parent, **{
      "rollout.prompts_per_step": PROMPTS, "rollout.group_size": G, "rollout.max_rows": max_rows,
      "rollout.batching": batching, "rollout.max_new_tokens": 24}))
  p = load_run(parent)
  task = rl.build_task(run.config.task, p.load_tokenizer(), 0)
  step = rl.RLStep(run, p.model, task)
  params = p.load_params(model.abstract_params(p.model))
  return step, params, task


@pytest.fixture(scope="module")
def rollouts(rl_parent_run):
  out = {}
  for batching in ("static", "continuous"):
    step, params, task = _step(rl_parent_run, batching)
    try:
      s = step.rollout.sample(params, rl.stream_indices(0, len(task.train), 0, PROMPTS), jax.random.key(3), G)
      out[batching] = {k: sharding.host_array(v) for k, v in {**s.rows, "lengths": s.lengths,
                                                              "truncated": s.truncated}.items()}
      out[batching]["choice"] = step.rollout.batching(PROMPTS, G)
    finally:
      step.close()
  return out


def test_continuous_rollout_equals_static(rollouts):
  static, cont = rollouts["static"], rollouts["continuous"]
  assert (static["choice"], cont["choice"]) == ("static", "continuous")
  lengths = static["lengths"]
  assert len(set(lengths.tolist())) >= 3 and lengths.min() < 24  # rows end at many lengths: slots are refilled
  for k in ("completion", "lengths", "truncated", "mask", "prompt", "prompt_mask"):
    np.testing.assert_array_equal(cont[k], static[k], err_msg=k)
  np.testing.assert_allclose(cont["old_logp"], static["old_logp"], atol=1e-5, rtol=0)
  assert np.abs(static["old_logp"]).sum() > 0


def test_auto_batching_picks_continuous_where_static_wastes_work(rl_parent_run):
  """Continuous with more completions than slots; static when every row has a slot; tool rounds: static."""
  for max_rows, prompts, expected in ((SLOTS, PROMPTS, "continuous"), (0, PROMPTS, "static"), (0, 16, "continuous"),
                                      (PROMPTS * G, PROMPTS, "static")):
    step, _, _ = _step(rl_parent_run, "auto", max_rows)
    try:
      assert step.rollout.batching(prompts, G) == expected, (max_rows, prompts)
    finally:
      step.close()
