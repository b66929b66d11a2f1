"""DeepSeek-Coder-Base-v1.5 7B from its HF checkpoint into a dsmath run (job "hf_import"), the run
configs/pretrain_7b.py starts from (init_from): checkpoints/0/params plus run.json with the model config (bf16
compute, full remat) and DeepSeek's tokenizer.json.

  python -m experiments.run --config configs/hf_import_7b.py
Placeholders: BUCKET (as in configs/pretrain_7b.py) and a local copy of the HF checkpoint directory.
"""
import ml_collections

from dsmath import config as config_lib
from dsmath.hf_stage import HFImportConfig

BUCKET = "gs://YOUR_BUCKET/deepseekmath"  # placeholder


def get_config() -> ml_collections.ConfigDict:
  c = config_lib.config_dict(HFImportConfig)
  c.workdir = f"{BUCKET}/checkpoints/deepseek-coder-7b-base-v1.5"
  c.hf_path = "/path/to/deepseek-coder-7b-base-v1.5"  # config.json + *.safetensors (+ index), tokenizer.json
  c.dtype = "bfloat16"
  c.remat = "full"
  return c
