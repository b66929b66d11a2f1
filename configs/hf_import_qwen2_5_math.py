"""Qwen2.5-Math-1.5B (or -7B) from its HF checkpoint into a dsmath run (job "hf_import"): the run the Qwen GRPO
configs start from (init_from): checkpoints/0/params plus run.json with the model config (family qwen2, bf16
compute, full remat) and Qwen's tokenizer.json, whose tokenizer_config.json (chat template, <|endoftext|>) and
generation_config.json beside it give the chat prompts and the stop ids.

  python -m experiments.run --config configs/hf_import_qwen2_5_math.py --config.hf_path=/path/to/Qwen2.5-Math-1.5B
  python -m experiments.run --config configs/hf_import_qwen2_5_math.py --config.hf_path=/path/to/Qwen2.5-Math-7B \\
      --workdir runs/qwen2.5-math-7b
Any Qwen2 / Qwen2.5 / Qwen3 / Llama (Llama 3.1 / 3.2 included) checkpoint imports the same way.
"""
import ml_collections

from dsmath import config as config_lib
from dsmath.hf_stage import HFImportConfig


def get_config() -> ml_collections.ConfigDict:
  c = config_lib.config_dict(HFImportConfig)
  c.workdir = "runs/qwen2.5-math-1.5b"
  c.hf_path = "/path/to/Qwen2.5-Math-1.5B"  # placeholder: config.json + *.safetensors, tokenizer.json, ...
  c.dtype = "bfloat16"
  c.remat = "full"
  return c
