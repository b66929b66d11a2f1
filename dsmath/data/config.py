"""The `config.data` fragment the train loop reads, with defaults and key checking.

config.data keys (defaults in `data_config_defaults()`):
  sources        {name: source}; see SOURCE_KEYS. Pre-training mixes them by `weight`; SFT sources use an SFT
                 `formatter` (dsmath.data.sft.SFT_FORMATTERS) and are mixed by `weight` too.
  seq_len        int, T: every batch row holds T input tokens (and T aligned targets).
  batch_size     int, GLOBAL rows per step; each process yields batch_size // process_count rows.
  seed           int: shuffling, mixing and packing are a pure function of the seed (and the process index).
  shuffle        bool: shuffle each source, with a fresh order every epoch.
  num_workers    int: 0 = in-process; > 0 = Grain worker processes (`mp_prefetch`), still deterministic.
  worker_buffer_size  int: batches buffered per worker.
  packing_bins   int: rows packed at once by first-fit (more bins = less padding); 0 = 4 x per-process batch.
  add_bos / add_eos   bool: pre-training documents are [BOS] text [EOS].
  on_error       "raise" | "skip": default handling of malformed records (a source may override).
  tokenizer      {kind: "" (infer) | "sentencepiece" | "hf", path, bos_token, eos_token, pad_token}.
  sft_template   name in dsmath.data.sft.TEMPLATES (the chat format of SFT examples).

A source (config.data.sources.<name>):
  path           glob or list of globs; `shared:` = the shared data folder.
  format         "" (infer from the extension) | "jsonl" | "parquet" | "array_record".
  text_field     record field holding the text (pre-training; default "text").
  formatter      "" or a name in dsmath.data.sources.FORMATTERS (pre-training) / dsmath.data.sft.SFT_FORMATTERS (SFT).
  weight         float > 0, relative sampling weight of documents (normalised over the sources).
  on_error       "" (use data.on_error) | "raise" | "skip".
"""
from __future__ import annotations

import importlib.util
import os
from typing import Mapping

import ml_collections

from dsmath.config import check_keys, to_dict

# The paper's stage-1 mixture (DeepSeekMath 7B continued pre-training, section 2.3).
PAPER_PRETRAIN_WEIGHTS = {"math": 0.56, "algebraic_stack": 0.04, "arxiv": 0.10, "code": 0.20,
                          "natural_language": 0.10}

SOURCE_KEYS = ("path", "format", "text_field", "formatter", "weight", "on_error")


def source_defaults() -> dict:
  return {"path": "", "format": "", "text_field": "text", "formatter": "", "weight": 1.0, "on_error": ""}


def data_config_defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.sources = ml_collections.ConfigDict()
  c.seq_len = 512
  c.batch_size = 8
  c.seed = 0
  c.shuffle = True
  c.num_workers = 0
  c.worker_buffer_size = 2
  c.packing_bins = 0
  c.add_bos = True
  c.add_eos = True
  c.on_error = "raise"
  c.tokenizer = ml_collections.ConfigDict({"kind": "", "path": "", "bos_token": "", "eos_token": "",
                                           "pad_token": ""})
  c.sft_template = "deepseek"
  return c


def resolve_data_config(data: Mapping | None) -> ml_collections.ConfigDict:
  """Defaults overlaid with `data`; any unknown key (top level, tokenizer or source) fails listing the valid keys."""
  out = data_config_defaults()
  data = to_dict(data or {})
  check_keys("config.data", data, out.keys())
  for key, value in data.items():
    if key == "sources":
      continue
    if key == "tokenizer":
      check_keys("config.data.tokenizer", value, out.tokenizer.keys())
      out.tokenizer.update(value)
    else:
      out[key] = value
  for name, src in data.get("sources", {}).items():
    check_keys(f"config.data.sources.{name}", src, SOURCE_KEYS)
    full = {**source_defaults(), **src}
    if not full["path"]:
      raise ValueError(f"config.data.sources.{name}.path is empty")
    if not float(full["weight"]) > 0:
      raise ValueError(f"config.data.sources.{name}.weight must be > 0, got {full['weight']}")
    if full["on_error"] not in ("", "raise", "skip"):
      raise ValueError(f"config.data.sources.{name}.on_error must be '', 'raise' or 'skip', got {full['on_error']!r}")
    out.sources[name] = ml_collections.ConfigDict(full)
  if out.on_error not in ("raise", "skip"):
    raise ValueError(f"config.data.on_error must be 'raise' or 'skip', got {out.on_error!r}")
  for key in ("seq_len", "batch_size"):
    if int(out[key]) < 1:
      raise ValueError(f"config.data.{key} must be >= 1, got {out[key]}")
  if int(out.num_workers) < 0:
    raise ValueError(f"config.data.num_workers must be >= 0, got {out.num_workers}")
  return out


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a big_vision-style config file."""
  spec = importlib.util.spec_from_file_location("_dsmath_config", path)
  if spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
