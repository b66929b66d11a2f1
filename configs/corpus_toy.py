"""Corpus mining on the toy crawl built from ../shared/data (synthetic URLs, real texts); runs in well under 2 min."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "corpus"
  c.workdir = "runs/corpus_toy"
  c.toy = ml_collections.ConfigDict({"enabled": True, "seed": 0})
  c.classifier = ml_collections.ConfigDict({
      "num_positives": 5000, "num_negatives": 5000,  # the paper: 500k each; the toy seed is smaller than that
      "lr": 0.1, "epoch": 10, "dim": 32, "word_ngrams": 2, "min_count": 2, "bucket": 200_000, "thread": 1, "seed": 0,
  })
  # Budget below the toy's ~530 math pages, so the round-1 classifier (MATH-only seeds) leaves word problems behind.
  c.selection = ml_collections.ConfigDict({"kind": "count", "budget": 500})
  c.domains = ml_collections.ConfigDict({"threshold": 0.10, "annotations": "configs/corpus_toy_annotations.yaml"})
  c.iteration = ml_collections.ConfigDict({"max_rounds": 5, "stop_overlap": 0.98})
  c.decontam = ml_collections.ConfigDict({"n": 10, "max_removed_fraction": 0.5})
  c.output = ml_collections.ConfigDict({"num_shards": 2})
  c.beam = ml_collections.ConfigDict({"runner": "FnApiRunner", "batch_size": 512, "options": {}})  # in-process
  return c
