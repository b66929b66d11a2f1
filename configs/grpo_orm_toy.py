"""GRPO with a learned outcome reward model (a scalar head trained on rule labels) on the toy task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.reward = "orm"
  c.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  return c
