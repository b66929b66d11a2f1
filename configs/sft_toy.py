"""The paradigm's SFT entry (gold solutions, GC = 1) on the synthetic task, for ablations against the RL methods.

The recipe's SFT stage is the train job's (dsmath.train: packing, exact resume): configs/sft_stage_toy.py."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.method = "sft"
  return c
