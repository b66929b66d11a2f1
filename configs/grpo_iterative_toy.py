"""Iterative GRPO (the paper's Algorithm 1) on the synthetic task: each iteration resets pi_ref to the policy, then
the outcome reward model continues training on current-policy samples plus a 10% replay of earlier rounds."""
from configs.grpo_orm_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.iterations = 3
  c.rl.steps = 10
  c.reward_model.replay_fraction = 0.1
  return c
