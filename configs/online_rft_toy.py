"""Online RFT on the synthetic task: the toy GRPO run with only the method changed (unified paradigm)."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "online_rft"
  return c
