"""A packed pipeline batch gives each document the same logits as running it alone (no attention across documents)."""
import json

import jax
import numpy as np

from dsmath import model
from dsmath.data import make_pretrain_iterator, train_sentencepiece
from dsmath.paths import shared_data_dir


def test_packed_batch_logits_equal_each_document_alone(tmp_path):
  questions = [json.loads(l)["question"] for l in open(shared_data_dir() / "gsm8k" / "train.jsonl", encoding="utf-8")]
  tok = train_sentencepiece(questions[:2000], tmp_path / "spm.model", vocab_size=512)
  cfg = model.ModelConfig.preset("tiny")
  assert tok.vocab_size == cfg.vocab_size
  data = {"sources": {"q": {"path": "shared:gsm8k/train.jsonl", "text_field": "question"}}, "seq_len": 512,
          "batch_size": 2, "seed": 0}
  batch = next(make_pretrain_iterator(data, tok, process_index=0, process_count=1))
  seg = batch["segment_ids"]
  assert seg.max(axis=1).min() >= 3  # several documents per row, so leaks would show
  params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))  # jitted: eager init is slow
  packed = np.asarray(model.logits(cfg, params, batch["inputs"], segment_ids=seg, positions=batch["positions"]))
  # Each document alone, at position 0 of its own row; right padding cannot reach it under causal attention. One
  # batched call (one compile) instead of one call per document length.
  docs = [(b, np.flatnonzero(seg[b] == s)) for b in range(seg.shape[0]) for s in np.unique(seg[b][seg[b] > 0])]
  alone_tokens = np.zeros((len(docs), seg.shape[1]), np.int32)
  for i, (b, where) in enumerate(docs):
    alone_tokens[i, :len(where)] = batch["inputs"][b, where]
  alone = np.asarray(model.logits(cfg, params, alone_tokens))
  for i, (b, where) in enumerate(docs):
    np.testing.assert_allclose(packed[b, where], alone[i, :len(where)], rtol=1e-5, atol=1e-5)
  assert len(docs) >= 6
