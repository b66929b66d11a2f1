"""Table 6's shared inputs (job "table6_data"): the code corpus and ONE tokenizer for every arm.

Writes into its run directory:
  code.jsonl (+ .manifest.json)  the Python standard library's .py files (dsmath.data.code_text), selected
                                 deterministically up to code_max_chars characters.
  tokenizer/spm.model            a sentencepiece model trained on equal character budgets of code, general text and
                                 math train text, so the code-first and general-first arms share the vocabulary and
                                 their per-token losses are comparable (and neither arm gets a tokenizer tuned to it).
  tokenizer_ref.json             {kind, path}: what the stage configs point data.tokenizer at.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import ml_collections

from dsmath.config import check_keys, to_dict


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "table6_data"
  c.code_max_chars = 2_100_000  # about the general text's size (the shared web pages hold 2.1M characters)
  c.code_seed = 0
  c.vocab_size = 512
  c.tokenizer_chars_per_source = 400_000
  # Text sources of the tokenizer (besides the code written here): {name: dsmath.data source config}.
  c.tokenizer_sources = ml_collections.ConfigDict({
      "general": {"path": "shared:web/dclm_*_data.jsonl", "text_field": "text"},
      "math": {"path": "shared:math/train.jsonl", "formatter": "math"},
      "gsm8k": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k"},
  })
  return c


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

  cfg = default_config()
  given = to_dict(config)
  check_keys("config", given, set(cfg.keys()) | {"workdir"})
  for k, v in given.items():
    if k != "workdir":
      cfg[k] = ml_collections.ConfigDict(v) if isinstance(v, dict) else v
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  code_path = out / "code.jsonl"
  manifest = code_text.write_code_jsonl(code_path, max_chars=int(cfg.code_max_chars), seed=int(cfg.code_seed))
  budget = int(cfg.tokenizer_chars_per_source)
  streams = [_budgeted((json.loads(line)["text"] for line in code_path.open()), budget)]
  for name, src in sorted(cfg.tokenizer_sources.to_dict().items()):
    streams.append(_budgeted(iter_source_texts({name: src}), budget))
  # Round-robin over the sources so each contributes its budget whatever the order.
  mixed = (t for group in itertools.zip_longest(*streams) for t in group if t is not None)
  tok_path = out / "tokenizer" / "spm.model"
  tok = train_sentencepiece(mixed, tok_path, vocab_size=int(cfg.vocab_size), max_chars=budget * len(streams))
  ref = {"kind": "sentencepiece", "path": str(tok_path)}
  tmp = out / "tokenizer_ref.json.tmp"
  tmp.write_text(json.dumps(ref))
  os.replace(tmp, out / "tokenizer_ref.json")
  return {"job": "table6_data", "code_jsonl": str(code_path), "code_files": manifest["num_files"],
          "code_chars": manifest["num_chars"], "python": manifest["python"], "tokenizer": str(tok_path),
          "vocab_size": tok.vocab_size}
