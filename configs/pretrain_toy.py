"""Toy continued pre-training: the tiny model on a math-heavy mixture of the shared data, ~1-2 min on 2 CPU cores.

  python -m experiments.run --config configs/pretrain_toy.py            # run dir: runs/pretrain_toy
Re-running resumes from the latest checkpoint. A 512-piece sentencepiece tokenizer is trained on the mixture on the
first run (runs/pretrain_toy/tokenizer/spm.model); the finished run's run.json records it with the model config, and
configs/sft_stage_toy.py starts from this run.

Mixture: the paper's stage 1 mixes 56% math web corpus / 4% AlgebraicStack / 10% arXiv / 20% GitHub code / 10%
natural language (configs/pretrain_7b.py). The shared data has no code or arXiv, so the toy keeps the math-heavy
shape: MATH train solutions + GSM8K train solutions (math, 90%) and Common Crawl pages (natural language, 10%), read
through `toy:` paths (the benchmark folder, or without one the subset shipped in dsmath/data/toy_data). Only train
splits are used; the optimizer is the paper's (AdamW 0.9/0.95, wd 0.1, clip 1.0, multi-step schedule), with
a toy peak lr and warm-up since 200 steps of a 0.16M-parameter model are not 50k steps of a 7B one.
"""
import ml_collections

from dsmath.train.config import default_config


def get_config() -> ml_collections.ConfigDict:
  c = default_config("pretrain")
  c.workdir = "runs/pretrain_toy"
  c.seed = 0
  c.model = {"preset": "tiny", "dtype": "float32"}
  c.data.sources = {
      "math": {"path": "toy:math/train.jsonl", "formatter": "math", "weight": 0.6},
      "math_word_problems": {"path": "toy:gsm8k/train.jsonl", "formatter": "gsm8k", "weight": 0.3},
      "natural_language": {"path": "toy:web/dclm_*_data.jsonl", "text_field": "text", "weight": 0.1},
  }
  c.data.seq_len = 256
  c.data.batch_size = 8
  c.data.seed = 0
  # data.tokenizer.path left empty: train a sentencepiece model (tokenizer_training) on the sources above
  c.tokenizer_training.vocab_size = 0  # 0 = model.vocab_size (512 for tiny)
  c.tokenizer_training.max_chars = 2_000_000
  c.optimizer.peak_lr = 3e-3
  c.optimizer.warmup_steps = 20
  c.train.total_steps = 200
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 2
  c.train.log_every = 10
  return c
