"""Held-out language-modelling loss of a trained model on fixed evaluation texts (job "heldout_loss").

Table 6 at toy scale compares models whose accuracy on MATH/GSM8K is zero, so the held-out measure is the model's
loss on the test splits' worked solutions (never trained on): nats per token and bits per character. Bits per
character does not depend on the tokenizer, so runs with different vocabularies stay comparable.

config:
  job          "heldout_loss"
  init_from    a run directory (its latest checkpoint), a checkpoint dir or a step dir (dsmath.train.load_params).
  model        the model's config (dsmath.model.ModelConfig.from_dict keys): must match the checkpoint.
  tokenizer    "" = the one recorded in <init_from>/tokenizer_ref.json; else a tokenizer config/path.
  seq_len      int: a document is [BOS] text [EOS] truncated to seq_len + 1 tokens (its tail is not scored).
  batch_size   int: documents per forward pass.
  sets         {name: {kind: "file" | "synthetic", path, formatter, text_field, max_docs}}: "file" reads JSONL/...
               via dsmath.data's sources (formatter "math" / "gsm8k" / "" = text_field); max_docs documents evenly
               spaced over the file. "synthetic" = the test split of dsmath.data.synthetic (question + solution).
Summary: {sets: {name: {nats_per_token, bits_per_char, tokens, chars, docs, truncated_docs}}, checkpoint_step, ...}.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dsmath.config import check_keys, to_dict

SET_KEYS = ("kind", "path", "formatter", "text_field", "max_docs")


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "heldout_loss"
  c.init_from = ""
  c.model = ml_collections.ConfigDict({"preset": "tiny"})
  c.tokenizer = ""
  c.seq_len = 256
  c.batch_size = 16
  c.sets = ml_collections.ConfigDict()
  return c


def set_texts(name: str, spec) -> list[str]:
  """The evaluation texts of one set (deterministic)."""
  spec = {"kind": "file", "path": "", "formatter": "", "text_field": "text", "max_docs": 0, **dict(spec)}
  unknown = sorted(set(spec) - set(SET_KEYS))
  if unknown:
    raise KeyError(f"config.sets.{name}: unknown key(s) {unknown}; valid keys: {list(SET_KEYS)}")
  n = int(spec["max_docs"])
  if spec["kind"] == "synthetic":
    from dsmath.data import synthetic
    if n < 1:
      raise ValueError(f"config.sets.{name}.max_docs must be >= 1 for a synthetic set")
    return [synthetic.PROMPT_TEMPLATE.format(question=p.question) + p.solution
            for p in synthetic.make_split("test", n, seed=0)]
  if spec["kind"] != "file":
    raise ValueError(f"config.sets.{name}.kind must be 'file' or 'synthetic', got {spec['kind']!r}")
  from dsmath.data.sources import TextOf, open_source
  if not spec["path"]:
    raise ValueError(f"config.sets.{name}.path is empty")
  source = open_source({"path": spec["path"], "format": "", "text_field": spec["text_field"],
                        "formatter": spec["formatter"], "on_error": "raise"})
  text_of = TextOf(source, spec["text_field"], spec["formatter"] or None)
  total = len(source)
  idx = range(total) if n <= 0 or n >= total else np.linspace(0, total - 1, n).round().astype(int)
  return [text_of(int(i)) for i in idx]


def _encode_rows(texts, tokenizer, seq_len: int):
  """[N, seq_len] inputs/targets/mask (float) and, per document, the characters its scored tokens cover."""
  n = len(texts)
  inputs = np.zeros((n, seq_len), np.int32)
  targets = np.zeros((n, seq_len), np.int32)
  mask = np.zeros((n, seq_len), np.float32)
  chars = np.zeros((n,), np.int64)
  truncated = 0
  for i, (text, ids) in enumerate(zip(texts, tokenizer.encode_batch(list(texts)))):
    full = [tokenizer.bos_id, *ids, tokenizer.eos_id]
    if len(full) > seq_len + 1:
      truncated += 1
      full = full[:seq_len + 1]
      chars[i] = len(tokenizer.decode(full[1:]))
    else:
      chars[i] = len(text)
    k = len(full) - 1
    inputs[i, :k], targets[i, :k], mask[i, :k] = full[:-1], full[1:], 1.0
  return inputs, targets, mask, chars, truncated


def make_nll_fn(model_cfg):
  from dsmath import model

  @jax.jit
  def nll(params, inputs, targets, mask):
    """[B, T] -> summed NLL (nats) and token count per row [B]."""
    seg = (mask > 0).astype(jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(inputs.shape[1], dtype=jnp.int32), inputs.shape)
    logits = model.logits(model_cfg, params, inputs, segment_ids=seg, positions=pos)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    tok = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return (tok * mask).sum(-1), mask.sum(-1)

  return nll


def evaluate_texts(nll_fn, params, tokenizer, texts, *, seq_len: int, batch_size: int) -> dict:
  inputs, targets, mask, chars, truncated = _encode_rows(texts, tokenizer, seq_len)
  total_nll, total_tok = 0.0, 0.0
  for start in range(0, len(texts), batch_size):
    sl = slice(start, start + batch_size)
    b = inputs[sl].shape[0]
    pad = batch_size - b  # a fixed batch shape: one compilation
    args = [np.pad(a[sl], ((0, pad), (0, 0))) for a in (inputs, targets, mask)]
    s, t = jax.device_get(nll_fn(params, *args))
    total_nll += float(s[:b].sum())
    total_tok += float(t[:b].sum())
  n_chars = int(chars.sum())
  return {"nats_per_token": total_nll / total_tok, "bits_per_char": total_nll / math.log(2) / n_chars,
          "tokens": int(total_tok), "chars": n_chars, "docs": len(texts), "truncated_docs": truncated}


def run(config, workdir: str) -> dict:
  from dsmath import data as data_lib
  from dsmath import model
  from dsmath.train import load_params, resolve_checkpoint

  cfg = default_config()
  given = to_dict(config)
  check_keys("config", given, set(cfg.keys()) | {"workdir"})
  for k, v in given.items():
    if k in ("model", "sets"):
      cfg[k] = ml_collections.ConfigDict(v)
    elif k != "workdir":
      cfg[k] = v
  if not cfg.init_from:
    raise ValueError("config.init_from is empty: the run directory (or checkpoint) to evaluate")
  if not cfg.sets:
    raise ValueError("config.sets is empty: nothing to evaluate")
  tok_cfg = cfg.tokenizer
  if not tok_cfg:
    ref = Path(cfg.init_from) / "tokenizer_ref.json"
    if not ref.exists():
      raise FileNotFoundError(f"config.tokenizer is empty and {ref} does not exist")
    tok_cfg = json.loads(ref.read_text())
  tokenizer = data_lib.load_tokenizer(tok_cfg)
  model_cfg = model.ModelConfig.from_dict(cfg.model.to_dict())
  _, step = resolve_checkpoint(cfg.init_from)
  params = load_params(cfg.init_from, model.abstract_params(model_cfg))
  nll_fn = make_nll_fn(model_cfg)
  sets = {}
  for name, spec in sorted(cfg.sets.items()):
    texts = set_texts(name, spec.to_dict() if hasattr(spec, "to_dict") else spec)
    sets[name] = evaluate_texts(nll_fn, params, tokenizer, texts, seq_len=int(cfg.seq_len),
                                batch_size=int(cfg.batch_size))
  out = {"job": "heldout_loss", "init_from": str(cfg.init_from), "checkpoint_step": step, "sets": sets,
         "workdir": str(workdir)}
  Path(workdir).mkdir(parents=True, exist_ok=True)
  return out
