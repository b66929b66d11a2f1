"""A finished run as an HF checkpoint (job "hf_export"): config.json of the run's family (LlamaForCausalLM,
Qwen2ForCausalLM, Qwen3ForCausalLM), safetensors shards and copies of the run's tokenizer files, which transformers'
from_pretrained loads.

  python -m experiments.run --config configs/hf_export.py --config.run=runs/grpo_qwen2.5_math_1.5b \\
      --workdir runs/grpo_qwen2.5_math_1.5b_hf
"""
import ml_collections

from dsmath import config as config_lib
from dsmath.hf_stage import HFExportConfig


def get_config() -> ml_collections.ConfigDict:
  c = config_lib.config_dict(HFExportConfig)
  c.run = "runs/grpo_qwen2.5_math_1.5b"  # placeholder: any finished run (run.json)
  c.workdir = "runs/grpo_qwen2.5_math_1.5b_hf"
  c.dtype = "bfloat16"
  return c
