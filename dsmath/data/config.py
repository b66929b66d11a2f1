"""The `config.data` schema the train loop reads (frozen dataclasses resolved by dsmath.config) and config files.

DataConfig (config.data):
  sources        {name: SourceConfig}. Pre-training mixes them by `weight`; SFT sources use an SFT `formatter`
                 (dsmath.data.sft.SFT_FORMATTERS) and are mixed by `weight` too.
  seq_len        T: every batch row holds T input tokens (and T aligned targets).
  batch_size     GLOBAL rows per step; each process yields batch_size // process_count rows.
  seed           shuffling, mixing and packing are a pure function of the seed (and the process index).
  shuffle        shuffle each source, with a fresh order every epoch.
  num_workers    0 = in-process; > 0 = Grain worker processes (`mp_prefetch`), still deterministic.
  worker_buffer_size  batches buffered per worker.
  packing_bins   rows packed at once by first-fit (more bins = less padding); 0 = 4 x per-process batch.
  add_bos / add_eos   pre-training documents are [BOS] text [EOS].
  on_error       "raise" | "skip": default handling of malformed records (a source may override).
  tokenizer      TokenizerConfig {kind, path, bos_token, eos_token, pad_token, chat_template}; an empty path: the
                 stage decides
                 (dsmath.train: init_from's run tokenizer, or one trained on the sources).
  sft_template   name in dsmath.data.sft.TEMPLATES (the chat format of SFT examples), or "chat": the tokenizer's own
                 chat template (its tokenizer_config.json), as evaluation and RL render it with chat = true.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
from typing import Any, Literal, Mapping, Union

import ml_collections

from dsmath import config as config_lib

# The paper's stage-1 mixture (DeepSeekMath 7B continued pre-training, section 2.3).
PAPER_PRETRAIN_WEIGHTS = {"math": 0.56, "algebraic_stack": 0.04, "arxiv": 0.10, "code": 0.20,
                          "natural_language": 0.10}


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """One named source (config.data.sources.<name>)."""
  path: Union[str, tuple[str, ...]] = ""  # glob or globs; `shared:` = the shared data folder
  format: Literal["", "jsonl", "parquet", "array_record"] = ""  # "" = from the extension
  text_field: str = "text"  # record field holding the text (pre-training)
  formatter: str = ""  # dsmath.data.sources.FORMATTERS (pre-training) / dsmath.data.sft.SFT_FORMATTERS (SFT)
  weight: float = 1.0  # relative sampling weight of documents (normalised over the sources)
  on_error: Literal["", "raise", "skip"] = ""  # "" = data.on_error

  def __post_init__(self):
    if not self.path:
      raise ValueError("path is empty")
    if not self.weight > 0:
      raise ValueError(f"weight must be > 0, got {self.weight}")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  """What dsmath.data.load_tokenizer takes: kind "" (from the path) | "sentencepiece" | "hf", and HF overrides of the
  files beside tokenizer.json (special tokens; chat_template: a Jinja file instead of tokenizer_config.json's)."""
  kind: Literal["", "sentencepiece", "hf"] = ""
  path: str = ""
  bos_token: str = ""
  eos_token: str = ""
  pad_token: str = ""
  chat_template: str = ""

  def as_ref(self) -> dict:
    """The non-empty keys: the form run.json records and load_tokenizer reads."""
    return {k: v for k, v in dataclasses.asdict(self).items() if v}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  sources: Mapping[str, SourceConfig] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
  seq_len: int = 512
  batch_size: int = 8
  seed: int = 0
  shuffle: bool = True
  num_workers: int = 0
  worker_buffer_size: int = 2
  packing_bins: int = 0
  add_bos: bool = True
  add_eos: bool = True
  on_error: Literal["raise", "skip"] = "raise"
  tokenizer: TokenizerConfig = config_lib.sub(TokenizerConfig)
  sft_template: str = "deepseek"

  def __post_init__(self):
    for key in ("seq_len", "batch_size"):
      if getattr(self, key) < 1:
        raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
    if self.num_workers < 0:
      raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def resolve_data_config(data: Any) -> DataConfig:
  """config.data (a DataConfig, or a mapping checked against the schema with errors naming config.data.<key>)."""
  if isinstance(data, DataConfig):
    return data
  return config_lib.resolve(DataConfig, data, "config.data")


def resolve_source(source: Any, path: str = "source") -> SourceConfig:
  """One source (a SourceConfig, or a mapping checked against the schema)."""
  if isinstance(source, SourceConfig):
    return source
  return config_lib.resolve(SourceConfig, source, path)


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a big_vision-style config file."""
  spec = importlib.util.spec_from_file_location("_dsmath_config", path)
  if spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
