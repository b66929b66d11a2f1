"""RLOO advantages (Ahmadian et al. 2024: leave-one-out baseline) in GRPO's objective on the synthetic task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "rloo"
  return c
