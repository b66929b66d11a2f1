"""Grain pipeline: mixture proportions, packing invariants, resumable state, sharding, sources and bad input."""
import json
import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from dsmath.data import (PAPER_PRETRAIN_WEIGHTS, RecordError, RecordSource, batch_stats, make_pretrain_iterator,
                         pretrain_documents, resolve_data_config, train_sentencepiece)
from dsmath.paths import shared_data_dir


def _write_jsonl(path, texts):
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  texts = [json.loads(l)["question"] for l in open(shared_data_dir() / "gsm8k" / "train.jsonl", encoding="utf-8")]
  return train_sentencepiece(texts[:3000], tmp_path_factory.mktemp("tok") / "spm.model", vocab_size=512)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Five sources named like the paper's, of very different sizes (algebraic_stack has 3 records)."""
  d = tmp_path_factory.mktemp("corpus")
  sizes = {"math": 400, "algebraic_stack": 3, "arxiv": 50, "code": 120, "natural_language": 30}
  rng = np.random.default_rng(0)
  words = "the sum of two primes is even when both exceed two so we add one and divide by three".split()
  sources = {}
  for name, n in sizes.items():
    texts = [f"{name} {i}: " + " ".join(rng.choice(words, size=int(rng.integers(3, 120)))) for i in range(n)]
    sources[name] = {"path": _write_jsonl(d / f"{name}.jsonl", texts), "weight": PAPER_PRETRAIN_WEIGHTS[name]}
  return sources


def _cfg(sources, **kw):
  return {"sources": sources, "seq_len": 64, "batch_size": 4, "seed": 3, **kw}


def test_realised_mixture_matches_paper_weights(corpus):
  docs = pretrain_documents(_cfg(corpus), process_index=0, process_count=1)
  n = 20_000
  names = [docs[i]["source"] for i in range(n)]
  for name, weight in PAPER_PRETRAIN_WEIGHTS.items():
    assert abs(names.count(name) / n - weight) <= 0.01, (name, names.count(name) / n, weight)
  # The 3-record source repeated (~266 times) instead of ending the mixture, every record in each epoch.
  small = [docs[i]["item"] for i in range(n) if names[i] == "algebraic_stack"]
  assert len(small) > 100 and len(set(small)) == 3
  assert sorted(small[:3]) == sorted(small[3:6])
  assert abs(sum(PAPER_PRETRAIN_WEIGHTS.values()) - 1.0) < 1e-9


def _check_packed_batch(batch, seq_len, doc_tokens):
  """Every invariant the model and the loss rely on."""
  assert set(batch) == {"inputs", "targets", "segment_ids", "positions", "loss_mask"}
  for k in ("inputs", "targets", "segment_ids", "positions"):
    assert batch[k].dtype == np.int32 and batch[k].shape == (4, seq_len)
  assert batch["loss_mask"].dtype == np.float32
  seg, pos = batch["segment_ids"], batch["positions"]
  for b in range(seg.shape[0]):
    row = seg[b]
    real = row > 0
    # Padding only at the end; segments numbered 1, 2, ... in order, each contiguous.
    assert not np.any(real[np.argmin(real):]) or real.all()
    ids = row[real]
    assert ids[0] == 1 and np.all(np.diff(ids) >= 0) and np.all(np.diff(ids) <= 1)
    assert np.all(batch["loss_mask"][b][~real] == 0) and np.all(batch["loss_mask"][b][real] == 1)
    for s in np.unique(ids):
      where = np.flatnonzero(row == s)
      np.testing.assert_array_equal(pos[b, where], np.arange(len(where)))
      x, y = batch["inputs"][b, where], batch["targets"][b, where]
      np.testing.assert_array_equal(y[:-1], x[1:])  # targets are the next tokens ...
      piece = np.concatenate([x, y[-1:]])
      # ... of one single document: the segment is a slice of a real document, so no target crosses documents.
      assert any(_is_chunk(piece, d, seq_len) for d in doc_tokens), piece


def _is_chunk(piece, doc, seq_len):
  for start in range(0, max(len(doc) - 1, 1), seq_len):
    if np.array_equal(doc[start:start + seq_len + 1], piece):
      return True
  return False


def test_packing_invariants_and_efficiency(corpus, tok):
  cfg = _cfg(corpus)
  docs = []
  for src in corpus.values():
    for line in open(src["path"], encoding="utf-8"):
      docs.append(np.asarray([tok.bos_id] + tok.encode(json.loads(line)["text"]) + [tok.eos_id], np.int32))
  assert max(len(d) for d in docs) > 2 * 64  # some documents are split into chunks
  it = make_pretrain_iterator(cfg, tok, process_index=0, process_count=1)
  effs = []
  for _ in range(8):
    batch = next(it)
    _check_packed_batch(batch, 64, docs)
    stats = batch_stats(batch)
    effs.append(stats["packing_efficiency"])
    assert stats["loss_tokens"] == np.sum(batch["segment_ids"] > 0)
  assert np.mean(effs) > 0.8
  assert max(batch_stats(next(it))["docs_per_row"] for _ in range(4)) > 1  # rows really hold several documents


def _batches(it, n):
  return [next(it) for _ in range(n)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_iterator_state_round_trip_and_determinism(corpus, tok):
  cfg = _cfg(corpus)
  it = make_pretrain_iterator(cfg, tok, process_index=0, process_count=1)
  first = _batches(it, 3)
  state = json.loads(json.dumps(it.get_state()))  # survives a JSON checkpoint
  after = _batches(it, 4)
  resumed = make_pretrain_iterator(cfg, tok, process_index=0, process_count=1)
  resumed.set_state(state)
  _assert_same(after, _batches(resumed, 4))
  # Same seed, same stream; another seed, another stream.
  _assert_same(first, _batches(make_pretrain_iterator(cfg, tok, process_index=0, process_count=1), 3))
  other = _batches(make_pretrain_iterator(_cfg(corpus, seed=4), tok, process_index=0, process_count=1), 1)[0]
  assert not np.array_equal(other["inputs"], first[0]["inputs"])


def test_state_round_trip_with_worker_processes(corpus, tok):
  cfg = _cfg(corpus, num_workers=1)
  it = make_pretrain_iterator(cfg, tok, process_index=0, process_count=1)
  _batches(it, 3)
  state = it.get_state()
  after = _batches(it, 3)
  resumed = make_pretrain_iterator(cfg, tok, process_index=0, process_count=1)
  resumed.set_state(state)
  _assert_same(after, _batches(resumed, 3))


def test_per_process_shards_are_disjoint(corpus):
  sources = {"math": corpus["math"]}
  seen = []
  for index in range(2):
    docs = pretrain_documents(_cfg(sources, shuffle=False), process_index=index, process_count=2)
    seen.append({docs[i]["item"] for i in range(200)})
  assert len(seen[0]) == len(seen[1]) == 200 and not seen[0] & seen[1]
  with pytest.raises(ValueError, match="not divisible"):
    make_pretrain_iterator(_cfg(sources, batch_size=3), None, process_index=0, process_count=2)


def test_parquet_and_array_record_sources(tmp_path, tok):
  texts = [f"record number {i} " + "x" * i for i in range(25)]
  pq.write_table(pa.table({"body": texts, "n": list(range(25))}), tmp_path / "a.parquet", row_group_size=7)
  writer = ArrayRecordWriter(str(tmp_path / "b.array_record"), "group_size:1")
  for t in texts:
    writer.write(json.dumps({"text": t}).encode())
  writer.close()
  pq_src = RecordSource(str(tmp_path / "*.parquet"), columns=["body"])
  ar_src = RecordSource(str(tmp_path / "*.array_record"))
  assert [pq_src[i]["body"] for i in range(25)] == texts == [ar_src[i]["text"] for i in range(25)]
  cfg = _cfg({"p": {"path": str(tmp_path / "a.parquet"), "text_field": "body"},
              "a": {"path": str(tmp_path / "b.array_record")}}, shuffle=False)
  docs = pretrain_documents(cfg, process_index=0, process_count=1)
  assert {docs[i]["item"] for i in range(100)} == set(texts)
  assert next(make_pretrain_iterator(cfg, tok, process_index=0, process_count=1))["inputs"].shape == (4, 64)


def test_malformed_jsonl_line_names_file_and_line(tmp_path, tok):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": oops}\n{"text": "c"}\n[1, 2]\n', encoding="utf-8")
  cfg = _cfg({"bad": {"path": str(path)}}, shuffle=False)
  with pytest.raises(RecordError, match=rf"{path}:4: malformed JSONL line"):
    docs = pretrain_documents(cfg, process_index=0, process_count=1)
    [docs[i] for i in range(5)]


def test_skip_mode_counts_and_reports_malformed_lines(tmp_path, caplog):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": oops}\n{"text": "c"}\n[1, 2]', encoding="utf-8")
  source = RecordSource(str(path), on_error="skip")
  assert source.skipped == {str(path): [4, 6]}
  assert [source[i]["text"] for i in range(len(source))] == ["a", "b", "c"]
  with caplog.at_level(logging.WARNING):
    docs = pretrain_documents(_cfg({"bad": {"path": str(path), "on_error": "skip"}}, shuffle=False),
                              process_index=0, process_count=1)
  assert f"skipped 2 malformed record(s) in {path} at line(s) [4, 6]" in caplog.text
  assert [docs[i]["item"] for i in range(6)] == ["a", "b", "c"] * 2


def test_missing_file_field_and_unknown_keys(tmp_path, corpus):
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope-*.jsonl"))):
    pretrain_documents(_cfg({"x": {"path": str(tmp_path / "nope-*.jsonl")}}), process_index=0, process_count=1)
  with pytest.raises(KeyError, match=r"unknown key\(s\) \['config.data.seqlen'\]; valid keys of config.data: .*'seq"):
    resolve_data_config({"seqlen": 3})
  with pytest.raises(KeyError, match=r"\['config.data.sources.math.wieght'\]; valid keys of config.data.sources.math: "
                                     r"\['format', 'formatter', 'on_error'"):
    resolve_data_config({"sources": {"math": {**corpus["math"], "wieght": 1}}})
  with pytest.raises(ValueError, match=r"config.data.sources.math.weight must be float, got str 'high'"):
    resolve_data_config({"sources": {"math": {**corpus["math"], "weight": "high"}}})
  with pytest.raises(ValueError, match=r"config.data.sources.math: weight must be > 0, got 0.0"):
    resolve_data_config({"sources": {"math": {**corpus["math"], "weight": 0.0}}})
  with pytest.raises(KeyError, match="valid formatters"):
    pretrain_documents(_cfg({"m": {**corpus["math"], "formatter": "nope"}}), process_index=0, process_count=1)
  docs = pretrain_documents(_cfg({"m": {**corpus["math"], "text_field": "body"}}), process_index=0, process_count=1)
  with pytest.raises(RecordError, match=r"math.jsonl:\d+: record has no field 'body'; its fields are \['text'\]"):
    docs[0]
