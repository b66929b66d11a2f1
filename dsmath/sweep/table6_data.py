"""Table 6's shared inputs (job "table6_data"): the code corpus and ONE tokenizer for every arm.

Writes into its run directory:
  code.jsonl (+ .manifest.json)  the Python standard library's .py files (dsmath.data.code_text), selected
                                 deterministically up to code_max_chars characters.
  tokenizer/spm.model            a sentencepiece model trained on equal character budgets of code, general text and
                                 math train text, so the code-first and general-first arms share the vocabulary and
                                 their per-token losses are comparable (and neither arm gets a tokenizer tuned to it).
                                 The stages that start from nothing point data.tokenizer.path at it; the stages that
                                 start from another run take it from that run's run.json.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import types
from pathlib import Path
from typing import Literal, Mapping

import ml_collections

from dsmath import config as config_lib
from dsmath.data.config import SourceConfig


def _tokenizer_sources() -> Mapping[str, SourceConfig]:
  return types.MappingProxyType({
      "general": SourceConfig(path="shared:web/dclm_*_data.jsonl", text_field="text"),
      "math": SourceConfig(path="shared:math/train.jsonl", formatter="math"),
      "gsm8k": SourceConfig(path="shared:gsm8k/train.jsonl", formatter="gsm8k"),
  })


@dataclasses.dataclass(frozen=True)
class Table6DataConfig:
  job: Literal["table6_data"] = "table6_data"
  workdir: str = ""
  code_max_chars: int = 2_100_000  # about the general text's size (the shared web pages hold 2.1M characters)
  code_seed: int = 0
  vocab_size: int = 512
  tokenizer_chars_per_source: int = 400_000
  # Text sources of the tokenizer (besides the code written here).
  tokenizer_sources: Mapping[str, SourceConfig] = dataclasses.field(default_factory=_tokenizer_sources)


def default_config() -> ml_collections.ConfigDict:
  return config_lib.config_dict(Table6DataConfig)


def _budgeted(texts, budget: int):
  total = 0
  for t in texts:
    if total >= budget:
      return
    yield t
    total += len(t)


def run(config, workdir: str) -> dict:
  from dsmath.data import code_text, train_sentencepiece
  from dsmath.data.sources import iter_source_texts

  cfg = config_lib.resolve(Table6DataConfig, config)
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  code_path = out / "code.jsonl"
  manifest = code_text.write_code_jsonl(code_path, max_chars=cfg.code_max_chars, seed=cfg.code_seed)
  budget = cfg.tokenizer_chars_per_source
  streams = [_budgeted((json.loads(line)["text"] for line in code_path.open()), budget)]
  for name, src in sorted(cfg.tokenizer_sources.items()):
    streams.append(_budgeted(iter_source_texts({name: src}), budget))
  # Round-robin over the sources so each contributes its budget whatever the order.
  mixed = (t for group in itertools.zip_longest(*streams) for t in group if t is not None)
  tok_path = out / "tokenizer" / "spm.model"
  tok = train_sentencepiece(mixed, tok_path, vocab_size=cfg.vocab_size, max_chars=budget * len(streams))
  return {"job": "table6_data", "code_jsonl": str(code_path), "code_files": manifest["num_files"],
          "code_chars": manifest["num_chars"], "python": manifest["python"], "tokenizer": str(tok_path),
          "vocab_size": tok.vocab_size}
