"""Iterative GRPO (the paper's Algorithm 1) on the synthetic task: each iteration resets pi_ref to the policy, runs
rl.steps GRPO steps with an outcome reward model, then continues training the RM on current-policy samples plus a 10%
replay of earlier RM data."""
from configs.grpo_orm_toy import get_config as _grpo_orm_toy


def get_config():
  c = _grpo_orm_toy()
  c.rl.iterations = 3
  c.rl.steps = 10
  c.rl.reward_model.replay_fraction = 0.1
  return c
