"""Memory plan of one DeepSeekMath 7B training step (bf16 compute, full remat, AdamW) on a simulated FSDP mesh.

  python -m experiments.plan --config configs/plan_7b.py [--config.mesh.shape='(1,32,1)'] \
      [--config.plan.batch_per_data_shard=2] [--config.model.num_layers=2]
The defaults (dsmath.train.plan.PlanStageConfig) are the paper's: every model field of the 7B, the pre-training
AdamW(0.9, 0.95, wd 0.1) with clip 1.0, batch 1 per shard of 4096 tokens on a (1, 16, 1) mesh.
"""
import ml_collections

from dsmath.train.plan import default_config


def get_config() -> ml_collections.ConfigDict:
  return default_config()
