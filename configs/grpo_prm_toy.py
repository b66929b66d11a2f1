"""GRPO with a learned process reward model trained on Math-Shepherd labels (completions from each step's prefix by
the policy; hard labels); only the reward changes from configs/grpo_toy.py."""
from configs.grpo_toy import get_config as _grpo_toy


def get_config():
  c = _grpo_toy()
  c.rl.reward = "prm"
  c.rl.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  c.rl.reward_model.label = "hard"
  return c
