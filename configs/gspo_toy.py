"""GSPO (Zheng et al. 2025: sequence-level importance ratio, clip 3e-4 / 4e-4) on the synthetic task."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "gspo"
  return c
