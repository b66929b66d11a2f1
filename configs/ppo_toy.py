"""ppo on the synthetic arithmetic task: the toy GRPO recipe with only the method changed (unified paradigm)."""
from configs.grpo_toy import get_config as _grpo_toy


def get_config():
  c = _grpo_toy()
  c.rl.method = "ppo"
  return c
