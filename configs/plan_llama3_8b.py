"""Memory plan of one Llama-3.1-8B continued pre-training step (bf16 compute, full remat, the paper's AdamW with
clipping, batch 1 x 4096 per fsdp shard) on a simulated FSDP mesh: configs/plan_7b.py with the llama-3.1-8b preset
(GQA with 8 KV heads, a 128K vocabulary, llama3 RoPE scaling).

  python -m experiments.plan --config configs/plan_llama3_8b.py [--config.mesh.shape='(1,32,1)']
"""
import dataclasses

import ml_collections

from dsmath.model import ModelConfig
from dsmath.train.plan import default_config


def get_config() -> ml_collections.ConfigDict:
  c = default_config()
  c.model = dataclasses.asdict(ModelConfig.preset("llama-3.1-8b", dtype="bfloat16", remat="full"))
  return c
