"""Dr. GRPO (Liu et al. 2025: no std scaling, a constant length normaliser) on the synthetic task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "dr_grpo"
  return c
