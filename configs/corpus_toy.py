"""Corpus mining on the toy crawl built from the benchmark folder, or without one from the subset shipped with dsmath
(`toy:`, dsmath.paths): synthetic URLs, real texts; runs in well under 2 min."""
import ml_collections

from dsmath.corpus.pipeline import default_config


def get_config() -> ml_collections.ConfigDict:
  c = default_config()
  c.workdir = "runs/corpus_toy"
  c.data_dir = "toy:"
  c.toy.enabled = True
  c.toy.seed = 0
  # The paper: 500k positives and 500k negatives; the toy seed is smaller than that.
  c.classifier.update({"num_positives": 5000, "num_negatives": 5000, "lr": 0.1, "epoch": 10, "dim": 32,
                       "word_ngrams": 2, "min_count": 2, "bucket": 200_000, "thread": 1, "seed": 0})
  # Budget below the toy's ~530 math pages, so the round-1 classifier (MATH-only seeds) leaves word problems behind.
  c.selection.kind, c.selection.budget = "count", 500
  c.domains.threshold, c.domains.annotations = 0.10, "configs/corpus_toy_annotations.yaml"
  c.iteration.max_rounds, c.iteration.stop_overlap = 5, 0.98
  c.decontam.n, c.decontam.max_removed_fraction = 10, 0.5
  c.output.num_shards = 2
  c.beam.runner, c.beam.batch_size = "FnApiRunner", 512  # in-process
  return c
