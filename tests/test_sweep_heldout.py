"""Held-out loss: batched, padded evaluation equals a direct per-document computation with the model."""
import math

import jax
import numpy as np
import pytest

from dsmath import data as data_lib
from dsmath import model
from dsmath.config import resolve
from dsmath.sweep.heldout import TextSet, evaluate_texts, make_nll_fn, set_texts


def test_batched_padded_nll_matches_per_document(tmp_path):
  texts = set_texts(TextSet(path="shared:gsm8k/test.jsonl", formatter="gsm8k", max_docs=3))
  texts += set_texts(TextSet(kind="synthetic", max_docs=2))
  tok = data_lib.train_sentencepiece(texts * 4, tmp_path / "spm.model", vocab_size=400)
  cfg = model.ModelConfig.preset("tiny", vocab_size=400)
  params = model.init_params(cfg, jax.random.key(0))
  seq_len = 96  # some GSM8K solutions are longer: exercises truncation
  got = evaluate_texts(make_nll_fn(cfg), params, tok, texts, seq_len=seq_len, batch_size=2)
  total, tokens, chars = 0.0, 0, 0
  for text in texts:
    ids = [tok.bos_id, *tok.encode(text), tok.eos_id][:seq_len + 1]
    logits = model.logits(cfg, params, np.asarray([ids[:-1]], np.int32))
    logp = jax.nn.log_softmax(logits[0], -1)
    total += -float(np.sum(np.asarray(logp)[np.arange(len(ids) - 1), ids[1:]]))
    tokens += len(ids) - 1
    chars += len(text) if len(ids) - 1 < seq_len else len(tok.decode(ids[1:]))
  assert got["docs"] == 5 and got["tokens"] == tokens and got["chars"] == chars and got["truncated_docs"] > 0
  assert got["nats_per_token"] == pytest.approx(total / tokens, rel=1e-4)
  assert got["bits_per_char"] == pytest.approx(total / math.log(2) / chars, rel=1e-4)


def test_text_set_errors_name_the_key():
  with pytest.raises(KeyError, match=r"unknown key\(s\) \['config.sets.x.max_doc'\]"):
    resolve(TextSet, {"path": "shared:gsm8k/test.jsonl", "max_doc": 3}, "config.sets.x")
  with pytest.raises(ValueError, match=r"config.sets.x.kind must be one of \['file', 'synthetic'\], got 'web'"):
    resolve(TextSet, {"kind": "web", "path": "a"}, "config.sets.x")
  with pytest.raises(ValueError, match=r"config.sets.x: max_docs must be >= 1 for a synthetic set"):
    resolve(TextSet, {"kind": "synthetic"}, "config.sets.x")
