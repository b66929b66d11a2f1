"""The train stage's schema (pre-training and SFT): frozen dataclasses resolved once by dsmath.config.

TrainStageConfig, the stage config (configs/pretrain_*.py, configs/sft_*.py start from `default_config(job)`):
  job          "pretrain" | "sft" (dispatch key of experiments/run.py).
  seed         parameter init and the step RNG.
  init_from    "" or a finished run (its directory, checkpoints/ or one step directory; local or gs://) whose
               run.json gives the params, the model config and the tokenizer this run starts from; `model` and
               `data.tokenizer` are then left at their defaults. Ignored for the params when this run already has
               its own checkpoint (then it resumes from that).
  workdir      optional default run directory (experiments/run.py --workdir wins).
  model        without init_from: dsmath.model.ModelConfig (`preset` plus overrides; `dtype: bfloat16` for bf16).
  data         dsmath.data.config.DataConfig (sources, lengths, tokenizer).
  tokenizer_training  how to train a sentencepiece tokenizer (pre-training without a data.tokenizer.path).
  mesh, distributed, sharding, optimizer   the substrate the RL stage shares (below).
  train        TrainLoopConfig: steps, logging, checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Optional, Union

import ml_collections

from dsmath import config as config_lib
from dsmath.data.config import DataConfig
from dsmath.model import ModelConfig
from dsmath.model.sharding import DEFAULT_RULES


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The paper's pre-training optimizer (DeepSeekMath 7B, section 2.3): AdamW(0.9, 0.95, wd 0.1), clip 1.0,
  multi-step schedule: 2000 warm-up steps to 4.2e-4, then x0.316 at 80% and x0.1 at 90% of the steps."""
  peak_lr: float = 4.2e-4
  schedule: Literal["multistep", "constant", "cosine"] = "multistep"  # dsmath.train.optimizer.SCHEDULES
  warmup_steps: int = 2000
  decay_boundaries: tuple[float, ...] = (0.8, 0.9)  # fractions of the total steps (multistep)
  decay_factors: tuple[float, ...] = (0.316, 0.1)  # lr multipliers from each boundary on (relative to the peak)
  final_lr_fraction: float = 0.1  # cosine: lr at the end, as a fraction of the peak
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.1
  # Parameter-path substrings that get no weight decay: norm scales (decay would fight the normalisation), attention
  # biases (stacked [L, N, D], so not caught by the 1-D rule) and 1-D params in general
  # (dsmath.train.optimizer.decay_mask). Embeddings and the LM head are decayed (LLaMA/DeepSeek).
  no_decay: tuple[str, ...] = ("norm", "bias")
  grad_clip: float = 1.0  # global-norm clipping; 0 disables

  def __post_init__(self):
    # Every numeric hyper-parameter is finite (dsmath.config rejects NaN / inf) and in range, checked before any of
    # them reaches an update.
    if not self.peak_lr > 0:
      raise ValueError(f"peak_lr must be > 0, got {self.peak_lr}")
    if self.warmup_steps < 0:
      raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
    if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
      raise ValueError(f"b1 and b2 must be in [0, 1), got {self.b1}, {self.b2}")
    if not self.eps > 0 or self.weight_decay < 0 or self.grad_clip < 0:
      raise ValueError(f"eps must be > 0 and weight_decay, grad_clip >= 0, got {self.eps}, {self.weight_decay}, "
                       f"{self.grad_clip}")
    if not 0 <= self.final_lr_fraction <= 1:
      raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
    if len(self.decay_boundaries) != len(self.decay_factors):
      raise ValueError(f"decay_boundaries {list(self.decay_boundaries)} and decay_factors "
                       f"{list(self.decay_factors)} must have the same length")
    for i, (b, f) in enumerate(zip(self.decay_boundaries, self.decay_factors)):
      if not (0 <= b <= 1 and f >= 0 and math.isfinite(b) and math.isfinite(f)):
        raise ValueError(f"decay_boundaries[{i}]={b} must be in [0, 1] and decay_factors[{i}]={f} >= 0")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  shape: tuple[int, int, int] = (1, -1, 1)  # (data, fsdp, tensor); one entry may be -1 (the remaining devices)


@dataclasses.dataclass(frozen=True)
class ShardingConfig:
  """Logical axis name -> mesh axis, a tuple of mesh axes, or None (dsmath.model.sharding.DEFAULT_RULES)."""
  rules: tuple[tuple[str, Optional[Union[str, tuple[str, ...]]]], ...] = DEFAULT_RULES


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """dsmath.train.distributed: "" = one process; "auto" (TPU pods, SLURM); or "host:port" with the two below."""
  coordinator_address: str = ""
  num_processes: int = 1
  process_id: int = 0


@dataclasses.dataclass(frozen=True)
class TokenizerTrainingConfig:
  """Pre-training without data.tokenizer.path: a sentencepiece model trained on data.sources into
  <workdir>/tokenizer/spm.model (reused when the run resumes)."""
  vocab_size: int = 0  # 0 = model.vocab_size
  max_chars: int = 3_000_000


@dataclasses.dataclass(frozen=True)
class TrainLoopConfig:
  """config.train: the loop's steps, logging and checkpoints."""
  total_steps: int = 100
  grad_accum_steps: int = 1  # micro-batches per step: data.batch_size rows are split into this many
  log_every: int = 1  # metrics (JSONL + TensorBoard) every N steps
  checkpoint_every: int = 50  # save every N steps (and always at the end / on Ctrl-C)
  keep_checkpoints: int = 3  # keep the last N checkpoints
  async_checkpoint: bool = True
  max_consecutive_nonfinite: int = 3  # this many NaN/inf losses in a row stop the run (the last good ckpt is kept)
  peak_flops: float = 0.0  # per-device peak FLOP/s for MFU; 0 = measure a matmul's FLOP/s at start-up
  progress: bool = True  # tqdm progress bar with ETA
  # Test/debug knob: sleep this long after every step (does not change any result). The kill/resume tests use it
  # so a signal lands while the run is still going; leave 0 for real runs.
  debug_step_sleep_s: float = 0.0

  def __post_init__(self):
    for key in ("total_steps", "grad_accum_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                "max_consecutive_nonfinite"):
      if getattr(self, key) < 1:
        raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class TrainStageConfig:
  job: Literal["pretrain", "sft"] = "pretrain"
  seed: int = 0
  init_from: str = ""
  workdir: str = ""
  model: ModelConfig = config_lib.field(default_factory=lambda: ModelConfig.preset("tiny"),
                                        resolve=ModelConfig.resolve, config={"preset": "tiny"})
  data: DataConfig = config_lib.sub(DataConfig)
  tokenizer_training: TokenizerTrainingConfig = config_lib.sub(TokenizerTrainingConfig)
  mesh: MeshConfig = config_lib.sub(MeshConfig)
  distributed: DistributedConfig = config_lib.sub(DistributedConfig)
  sharding: ShardingConfig = config_lib.sub(ShardingConfig)
  optimizer: OptimizerConfig = config_lib.sub(OptimizerConfig)
  train: TrainLoopConfig = config_lib.sub(TrainLoopConfig)


def default_config(job: str = "pretrain") -> ml_collections.ConfigDict:
  """Every key of the stage with its default, for `get_config()` files (and --config.a.b=... overrides)."""
  c = config_lib.config_dict(TrainStageConfig)
  c.job = job
  return c


def resolve_config(config: Any) -> TrainStageConfig:
  """The stage config (ConfigDict, dict or TrainStageConfig) checked against the schema at every depth."""
  if isinstance(config, TrainStageConfig):
    return config
  return config_lib.resolve(TrainStageConfig, config)
