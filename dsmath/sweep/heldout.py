"""Held-out language-modelling loss of a trained model on fixed evaluation texts (job "heldout_loss").

Table 6 at toy scale compares models whose accuracy on MATH/GSM8K is zero, so the held-out measure is the model's
loss on the test splits' worked solutions (never trained on): nats per token and bits per character. Bits per
character does not depend on the tokenizer, so runs with different vocabularies stay comparable.

The config is HeldoutLossConfig, resolved once by `run`:
  init_from    a finished run (its directory, checkpoints/ or one step directory): run.json gives the model config
               and the tokenizer, the checkpoint the params.
  seq_len      a document is [BOS] text [EOS] truncated to seq_len + 1 tokens (its tail is not scored).
  batch_size   documents per forward pass.
  sets         {name: TextSet}: kind "file" reads JSONL/... via dsmath.data's sources (formatter "math" / "gsm8k" /
               "" = text_field), max_docs documents evenly spaced over the file (0 = all); kind "synthetic" = the
               test split of dsmath.data.synthetic (question + solution), max_docs of them.
Summary: {sets: {name: {nats_per_token, bits_per_char, tokens, chars, docs, truncated_docs}}, checkpoint_step, ...}.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Literal, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dsmath import config as config_lib
from dsmath.data.tokenizer import bos_prefix


@dataclasses.dataclass(frozen=True)
class TextSet:
  kind: Literal["file", "synthetic"] = "file"
  path: str = ""
  formatter: str = ""
  text_field: str = "text"
  max_docs: int = 0

  def __post_init__(self):
    if self.kind == "file" and not self.path:
      raise ValueError("path is empty")
    if self.kind == "synthetic" and self.max_docs < 1:
      raise ValueError("max_docs must be >= 1 for a synthetic set")


@dataclasses.dataclass(frozen=True)
class HeldoutLossConfig:
  job: Literal["heldout_loss"] = "heldout_loss"
  workdir: str = ""
  init_from: str = ""
  seq_len: int = 256
  batch_size: int = 16
  sets: Mapping[str, TextSet] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))


def default_config() -> ml_collections.ConfigDict:
  return config_lib.config_dict(HeldoutLossConfig)


def set_texts(spec: TextSet) -> list[str]:
  """The evaluation texts of one set (deterministic)."""
  n = spec.max_docs
  if spec.kind == "synthetic":
    from dsmath.data import synthetic
    return [synthetic.PROMPT_TEMPLATE.format(question=p.question) + p.solution
            for p in synthetic.make_split("test", n, seed=0)]
  from dsmath.data import SourceConfig
  from dsmath.data.sources import TextOf, open_source
  source = open_source(SourceConfig(path=spec.path, text_field=spec.text_field, formatter=spec.formatter,
                                    on_error="raise"))
  text_of = TextOf(source, spec.text_field, spec.formatter or None)
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
    pre = bos_prefix(tokenizer)
    full = [*pre, *ids, tokenizer.eos_id]
    if len(full) > seq_len + 1:
      truncated += 1
      full = full[:seq_len + 1]
      chars[i] = len(tokenizer.decode(full[len(pre):]))
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
  from dsmath.runs import load_run

  cfg = config_lib.resolve(HeldoutLossConfig, config)
  if not cfg.init_from:
    raise config_lib.ConfigError("config.init_from is empty: the finished run to evaluate")
  if not cfg.sets:
    raise config_lib.ConfigError("config.sets is empty: nothing to evaluate")
  parent = load_run(cfg.init_from)
  tokenizer, params = parent.load_tokenizer(), parent.load_params()
  nll_fn = make_nll_fn(parent.model)
  sets = {name: evaluate_texts(nll_fn, params, tokenizer, set_texts(spec), seq_len=cfg.seq_len,
                               batch_size=cfg.batch_size) for name, spec in sorted(cfg.sets.items())}
  return {"job": "heldout_loss", "init_from": cfg.init_from, "run": parent.path, "checkpoint_step": parent.step,
          "sets": sets, "workdir": str(workdir)}
