"""GRPO with process supervision (the rule step checker of the synthetic task: 1/0 per step) on the toy task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.reward = "step_check"
  return c
