"""Memory plan of one DeepSeekMath 7B training step (bf16 compute, full remat, AdamW) on a simulated FSDP mesh.

  python -m experiments.plan --config configs/plan_7b.py [--config.mesh.shape='(1,32,1)'] \
      [--config.plan.batch_per_data_shard=2] [--config.model.num_layers=2]
"""
import dataclasses

import ml_collections

from dsmath.model.config import ModelConfig
from dsmath.model.sharding import DEFAULT_RULES
from dsmath.train.config import OPTIMIZER_DEFAULTS


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "plan"
  # Every field spelled out so any can be overridden (--config.model.num_layers=2).
  c.model = ml_collections.ConfigDict(dataclasses.asdict(ModelConfig.preset("7b", dtype="bfloat16", remat="full")))
  c.mesh = ml_collections.ConfigDict({"shape": (1, 16, 1)})  # every axis given: the plan simulates these devices
  c.sharding = ml_collections.ConfigDict({"rules": [list(r) for r in DEFAULT_RULES]})
  c.optimizer = ml_collections.ConfigDict(OPTIMIZER_DEFAULTS)  # the paper's AdamW(0.9, 0.95, wd 0.1), clip 1.0
  c.plan = ml_collections.ConfigDict({
      "batch_per_data_shard": 1,  # rows per (data x fsdp) shard; global batch = this * data * fsdp
      "seq_len": 4096,
      "grad_accum_steps": 1,
      "total_steps": 50_000,  # only shapes the schedule; no effect on memory
  })
  return c
