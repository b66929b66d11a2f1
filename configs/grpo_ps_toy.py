"""GRPO with process supervision on the synthetic task: step rewards from the rule step checker (no learned PRM)."""
from configs.grpo_toy import get_config as _grpo_toy


def get_config():
  c = _grpo_toy()
  c.rl.reward = "step_check"
  return c
