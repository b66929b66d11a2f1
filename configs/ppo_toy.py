"""PPO (value model, GAE, KL in the reward) on the synthetic task: the toy GRPO run with only the method changed."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "ppo"
  return c
