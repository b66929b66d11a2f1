"""DAPO (Yu et al. 2025: clip-higher 0.28, token-level loss, dynamic sampling, overlong shaping, no KL) on the
synthetic task; the method's registry entry sets those defaults."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "dapo"
  return c
