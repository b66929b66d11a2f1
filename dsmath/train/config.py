"""The train-stage config: defaults for every key, and a check that fails on unknown keys, listing the valid ones.

A stage config (configs/pretrain_*.py, configs/sft_*.py) is a ConfigDict with these top-level keys:
  job          "pretrain" | "sft" (dispatch key of experiments/run.py).
  seed         int: parameter init and the step RNG.
  init_from    "" or a path (local or gs://) to another stage's run directory (its latest checkpoint is used) or to
               one checkpoint step directory; only the params are taken from it. Ignored when this run already has
               its own checkpoint (then it resumes from that).
  workdir      optional default run directory (experiments/run.py --workdir wins).
  model        dsmath.model.ModelConfig.from_dict keys (`preset` plus overrides; `dtype: bfloat16` for bf16 compute).
  data         the data engineer's fragment (dsmath.data.config.resolve_data_config checks it).
  tokenizer_training  how to train a sentencepiece tokenizer when data.tokenizer.path is empty (see below).
  mesh         {shape: [data, fsdp, tensor]} (one entry may be -1).
  distributed  {coordinator_address: "" | "auto" | "host:port", num_processes, process_id} (dsmath.train.distributed).
  sharding     {rules: [[logical name, mesh axis | [axes] | None], ...]} (dsmath.model.sharding.DEFAULT_RULES).
  optimizer    see OPTIMIZER_DEFAULTS (dsmath.train.optimizer).
  train        see TRAIN_DEFAULTS.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, Optional, Union

import ml_collections

from dsmath.config import check_keys, to_dict
from dsmath.model.sharding import DEFAULT_RULES
from dsmath.train.distributed import DISTRIBUTED_DEFAULTS

JOBS = ("pretrain", "sft")

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
  # Parameter-path substrings that get no weight decay: norm scales (decay would fight the normalisation) and 1-D
  # params in general (dsmath.train.optimizer.decay_mask). Embeddings and the LM head are decayed (LLaMA/DeepSeek).
  no_decay: tuple[str, ...] = ("norm",)
  grad_clip: float = 1.0  # global-norm clipping; 0 disables

  def __post_init__(self):
    if not self.peak_lr > 0:
      raise ValueError(f"peak_lr must be > 0, got {self.peak_lr}")
    if self.warmup_steps < 0:
      raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
    if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
      raise ValueError(f"b1 and b2 must be in [0, 1), got {self.b1}, {self.b2}")
    if not self.eps > 0 or self.weight_decay < 0 or self.grad_clip < 0:
      raise ValueError(f"eps must be > 0 and weight_decay, grad_clip >= 0, got {self.eps}, {self.weight_decay}, "
                       f"{self.grad_clip}")
    if len(self.decay_boundaries) != len(self.decay_factors):
      raise ValueError(f"decay_boundaries {list(self.decay_boundaries)} and decay_factors "
                       f"{list(self.decay_factors)} must have the same length")


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


OPTIMIZER_DEFAULTS = to_dict(OptimizerConfig())

TRAIN_DEFAULTS = {
    "total_steps": 100,
    "grad_accum_steps": 1,           # micro-batches per step: data.batch_size rows are split into this many
    "log_every": 1,                  # metrics (JSONL + TensorBoard) every N steps
    "checkpoint_every": 50,          # save every N steps (and always at the end / on Ctrl-C)
    "keep_checkpoints": 3,           # keep the last N checkpoints
    "async_checkpoint": True,
    "max_consecutive_nonfinite": 3,  # this many NaN/inf losses in a row stop the run (the last good ckpt is kept)
    "peak_flops": 0.0,               # per-device peak FLOP/s for MFU; 0 = measure a matmul's FLOP/s at start-up
    "progress": True,                # tqdm progress bar with ETA
    # Test/debug knob: sleep this long after every step (does not change any result). The kill/resume tests use it
    # so a signal lands while the run is still going; leave 0 for real runs.
    "debug_step_sleep_s": 0.0,
}

# When data.tokenizer.path is empty, a sentencepiece model is trained on the data sources into
# <workdir>/tokenizer/spm.model (or reused from init_from's run directory, so SFT shares pre-training's vocabulary).
TOKENIZER_TRAINING_DEFAULTS = {
    "vocab_size": 0,                 # 0 = model.vocab_size
    "max_chars": 3_000_000,
}


def default_config(job: str = "pretrain") -> ml_collections.ConfigDict:
  """Every top-level key with its default (data defaults come from dsmath.data at resolve time)."""
  c = ml_collections.ConfigDict()
  c.job = job
  c.seed = 0
  c.init_from = ""
  c.workdir = ""
  c.model = ml_collections.ConfigDict({"preset": "tiny"})
  c.data = ml_collections.ConfigDict()
  c.tokenizer_training = ml_collections.ConfigDict(TOKENIZER_TRAINING_DEFAULTS)
  c.mesh = ml_collections.ConfigDict({"shape": [1, -1, 1]})
  c.distributed = ml_collections.ConfigDict(DISTRIBUTED_DEFAULTS)
  c.sharding = ml_collections.ConfigDict({"rules": [list(r) for r in DEFAULT_RULES]})
  c.optimizer = ml_collections.ConfigDict(OPTIMIZER_DEFAULTS)
  c.train = ml_collections.ConfigDict(TRAIN_DEFAULTS)
  return c


# Sections whose keys are checked here; `model` and `data` are checked by their owners' from_dict/resolve.
_CHECKED_SECTIONS = ("tokenizer_training", "mesh", "distributed", "sharding", "optimizer", "train")
_OPAQUE_SECTIONS = ("model", "data")


def resolve_config(config: Mapping) -> ml_collections.ConfigDict:
  """Defaults overlaid with `config`, locked; an unknown key anywhere fails listing the valid keys.

  Returns a new locked ConfigDict (assigning an unknown key later also fails).
  """
  given = to_dict(config)
  job = given.get("job", "pretrain")
  if job not in JOBS:
    raise ValueError(f"config.job={job!r} is not a train job; valid: {list(JOBS)}")
  out = default_config(job)
  check_keys("config", given, out.keys())
  for key, value in given.items():
    if key in _CHECKED_SECTIONS:
      if not isinstance(value, Mapping):
        raise TypeError(f"config.{key} must be a mapping, got {type(value).__name__}")
      check_keys(f"config.{key}", value, out[key].keys())
      out[key].update(value)
    elif key in _OPAQUE_SECTIONS:
      out[key] = ml_collections.ConfigDict(value)
    else:
      out[key] = value
  opt, train = out.optimizer, out.train
  if len(opt.decay_boundaries) != len(opt.decay_factors):
    raise ValueError(f"config.optimizer.decay_boundaries {list(opt.decay_boundaries)} and decay_factors "
                     f"{list(opt.decay_factors)} must have the same length")
  for key in ("total_steps", "grad_accum_steps", "log_every", "checkpoint_every", "keep_checkpoints",
              "max_consecutive_nonfinite"):
    if int(train[key]) < 1:
      raise ValueError(f"config.train.{key} must be >= 1, got {train[key]}")
  out.lock()
  return out
