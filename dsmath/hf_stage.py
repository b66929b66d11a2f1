"""HF checkpoints in and out of dsmath runs: the `hf_import` and `hf_export` jobs.

hf_import (HFImportConfig): an HF checkpoint directory (config.json + safetensors) of LlamaForCausalLM (DeepSeek,
  Llama 3), Qwen2ForCausalLM (Qwen2.5, Qwen2.5-Math) or Qwen3ForCausalLM -> a dsmath run: <workdir>/checkpoints/0/params
  (what init_from loads) and <workdir>/run.json (the model config from config.json, with its family; the tokenizer:
  `tokenizer.path`, default the directory's tokenizer.json, whose tokenizer_config.json and generation_config.json
  beside it give the model's special tokens, stop ids and chat template). The 7B configs' init_from points at one.
hf_export (HFExportConfig): a finished run -> <workdir>/config.json + safetensors shards (dsmath.model.to_hf) and a
  copy of the run's tokenizer files (tokenizer.json and, when present beside it, tokenizer_config.json,
  special_tokens_map.json, generation_config.json, chat_template.jinja, and a chat_template file the run names), so
  transformers loads the model and its tokenizer from the directory; model config and tokenizer come from run.json.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Literal

from etils import epath

from dsmath import config as config_lib
from dsmath.data.config import TokenizerConfig


# What transformers reads beside tokenizer.json (special tokens, chat template, generation stop ids).
TOKENIZER_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                        "chat_template.jinja")


@dataclasses.dataclass(frozen=True)
class HFImportConfig:
  job: Literal["hf_import"] = "hf_import"
  workdir: str = ""
  hf_path: str = ""  # the HF checkpoint directory
  tokenizer: TokenizerConfig = config_lib.sub(TokenizerConfig)  # path "" = <hf_path>/tokenizer.json
  # ModelConfig fields set on top of the checkpoint's shapes (the compute and storage settings of later stages)
  dtype: Literal["float32", "bfloat16"] = "float32"
  param_dtype: Literal["float32", "bfloat16"] = "float32"
  remat: str = "none"


@dataclasses.dataclass(frozen=True)
class HFExportConfig:
  job: Literal["hf_export"] = "hf_export"
  workdir: str = ""  # receives config.json, the safetensors and the tokenizer file
  run: str = ""  # a finished run (its directory, checkpoints/ or one step directory)
  dtype: Literal["", "float32", "bfloat16"] = ""  # "" = the params' dtype
  max_shard_size: str = "5GB"


def run_import(config, workdir: str) -> dict:
  from dsmath.data import load_tokenizer
  from dsmath.model import from_hf
  from dsmath.runs import write_run
  from dsmath.train.checkpoint import save_params

  cfg = config_lib.resolve(HFImportConfig, config)
  if not cfg.hf_path:
    raise config_lib.ConfigError("config.hf_path is empty: the HF checkpoint directory to import")
  tok = cfg.tokenizer
  if not tok.path:
    tok = dataclasses.replace(tok, kind="hf", path=os.path.join(cfg.hf_path, "tokenizer.json"))
  tokenizer = load_tokenizer(tok.as_ref())  # fails here, naming the file, rather than in a later stage
  model_cfg, params = from_hf(cfg.hf_path, dtype=cfg.dtype, param_dtype=cfg.param_dtype, remat=cfg.remat)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"tokenizer {tok.path} has {tokenizer.vocab_size} pieces > the checkpoint's vocab_size="
                     f"{model_cfg.vocab_size}")
  save_params(workdir, 0, params)
  run = write_run(workdir, job="hf_import", model=model_cfg, tokenizer=tok.as_ref(), step=0, config=cfg)
  return {"job": "hf_import", "hf_path": cfg.hf_path, "checkpoint": run.checkpoint, "tokenizer": run.tokenizer,
          "family": model_cfg.family, "num_params": model_cfg.num_params()}


def run_export(config, workdir: str) -> dict:
  from dsmath.data.sources import resolve_path
  from dsmath.files import write_bytes_atomic
  from dsmath.model import to_hf
  from dsmath.runs import load_run

  cfg = config_lib.resolve(HFExportConfig, config)
  if not cfg.run:
    raise config_lib.ConfigError("config.run is empty: the finished run to export")
  run = load_run(cfg.run)
  to_hf(run.model, run.load_params(), workdir, max_shard_size=cfg.max_shard_size, dtype=cfg.dtype or None)
  source = epath.Path(resolve_path(run.tokenizer["path"]))
  copies = {source.name: source}
  copies.update({name: source.parent / name for name in TOKENIZER_SIDE_FILES if (source.parent / name).exists()})
  if run.tokenizer.get("chat_template"):  # the run's own template file stands in for the directory's
    copies["chat_template.jinja"] = epath.Path(resolve_path(run.tokenizer["chat_template"]))
  for name, f in copies.items():
    write_bytes_atomic(os.path.join(workdir, name), f.read_bytes())
  return {"job": "hf_export", "run": run.path, "step": run.step, "output": str(workdir), "family": run.model.family,
          "tokenizer": os.path.join(workdir, source.name), "tokenizer_files": sorted(copies)}
