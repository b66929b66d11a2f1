"""DeepSeekMath-Instruct 7B SFT (paper section 3): from DeepSeekMath-Base 7B, 776K chain-of-thought,
program-of-thought and tool-integrated examples; 500 steps, batch 256, constant lr 5e-5, context 4096.

Placeholders: init_from (the pre-training run, configs/pretrain_7b.py, whose run.json gives the model config and
DeepSeek's tokenizer) and, for the paper's full data, extra SFT sources beside the built-in GSM8K / MATH train ones.
"""
import ml_collections

from dsmath.data import builtin_sft_sources
from dsmath.train.config import default_config

BUCKET = "gs://YOUR_BUCKET/deepseekmath"  # placeholder


def get_config() -> ml_collections.ConfigDict:
  c = default_config("sft")
  c.workdir = f"{BUCKET}/runs/sft_7b"
  c.init_from = f"{BUCKET}/runs/pretrain_7b"
  c.data.sources = builtin_sft_sources()
  c.data.seq_len = 4096
  c.data.batch_size = 256
  c.data.seed = 0
  c.optimizer.schedule = "constant"
  c.optimizer.peak_lr = 5e-5
  c.optimizer.warmup_steps = 50
  c.train.total_steps = 500
  c.train.checkpoint_every = 100
  c.train.log_every = 10
  return c
