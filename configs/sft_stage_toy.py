"""Toy SFT stage (dsmath.train.run, job "sft"): the tiny model from configs/pretrain_toy.py's run, on GSM8K / MATH
train chain-of-thought, program-of-thought and tool-integrated solutions (loss on response tokens only), ~1 min on
2 CPU cores.

  python -m experiments.run --config configs/pretrain_toy.py        # -> runs/pretrain_toy
  python -m experiments.run --config configs/sft_stage_toy.py       # init_from runs/pretrain_toy -> runs/sft_stage_toy
The model config and the tokenizer are the pre-training run's (its run.json), so neither is set here. The paper's
SFT uses a constant 5e-5 after a short warm-up (configs/sft_7b.py); the toy keeps the constant schedule with a
toy-sized lr. This is the recipe's SFT (the train job: packing, exact resume); configs/sft_toy.py is the RL
paradigm's "sft" entry on the synthetic task, kept for ablations against the RL methods.
"""
import ml_collections

from dsmath.data import builtin_sft_sources
from dsmath.train.config import default_config


def get_config() -> ml_collections.ConfigDict:
  c = default_config("sft")
  c.workdir = "runs/sft_stage_toy"
  c.init_from = "runs/pretrain_toy"
  c.data.sources = builtin_sft_sources()  # gsm8k_cot, gsm8k_pot, gsm8k_tool, math_cot (train splits only)
  c.data.seq_len = 256
  c.data.batch_size = 8
  c.data.seed = 0
  c.optimizer.schedule = "constant"
  c.optimizer.peak_lr = 1e-3
  c.optimizer.warmup_steps = 10
  c.train.total_steps = 100
  c.train.checkpoint_every = 50
  c.train.keep_checkpoints = 2
  c.train.log_every = 10
  return c
