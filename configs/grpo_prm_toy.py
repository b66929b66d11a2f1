"""GRPO+PS with a learned process reward model (Math-Shepherd labels) on the toy task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.reward = "prm"
  c.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  c.reward_model.label = "hard"
  return c
