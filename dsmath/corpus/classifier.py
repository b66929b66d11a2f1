"""fastText math-page classifier: text normalisation, training with a JSON metadata sidecar, batched scoring."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from typing import Sequence

import numpy as np

from dsmath.files import write_atomic, write_json_atomic

MATH_LABEL = "__label__math"
OTHER_LABEL = "__label__other"
MAX_NAN_RETRIES = 20
_SYMBOL = re.compile(r"([^\w\s])")
_SPACE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class ClassifierParams:
  """Training sizes and fastText hyper-parameters (the paper samples 500k positives and 500k negatives)."""
  num_positives: int = 500_000
  num_negatives: int = 500_000
  lr: float = 0.1
  epoch: int = 5
  dim: int = 100
  word_ngrams: int = 2
  min_count: int = 1
  minn: int = 0
  maxn: int = 0
  bucket: int = 2_000_000
  loss: str = "softmax"
  thread: int = 1  # 1 thread => deterministic training for a fixed seed and input order
  seed: int = 0
  max_chars: int = 20_000  # long pages are truncated before normalisation; the head carries the topic


def normalize_text(text: str, max_chars: int = 20_000) -> str:
  """One-line fastText input: NFKC, lower-case, symbols split off as tokens, all whitespace (newlines too) -> ' '.

  Symbols are kept as tokens because '=', '^', '\\' and '$' are strong math cues.
  """
  text = unicodedata.normalize("NFKC", text[:max_chars]).lower()
  return _SPACE.sub(" ", _SYMBOL.sub(r" \1 ", text)).strip()


def _sample(texts: Sequence[str], k: int, rng: random.Random) -> list[str]:
  return list(texts) if len(texts) <= k else rng.sample(list(texts), k)


def train_classifier(positives: Sequence[str], negatives: Sequence[str], params: ClassifierParams,
                     model_path: str, extra_metadata: dict | None = None) -> dict:
  """Train on up to params.num_positives / num_negatives sampled texts; save model + '<model_path>.json' sidecar.

  Returns the metadata written to the sidecar (params, sample counts, training time, label names).
  """
  if not positives or not negatives:
    raise ValueError(f"classifier needs positives and negatives, got {len(positives)} and {len(negatives)}")
  rng = random.Random(params.seed)
  pos = _sample(positives, params.num_positives, rng)
  neg = _sample(negatives, params.num_negatives, rng)
  lines = [f"{MATH_LABEL} {normalize_text(t, params.max_chars)}" for t in pos]
  lines += [f"{OTHER_LABEL} {normalize_text(t, params.max_chars)}" for t in neg]
  rng.shuffle(lines)
  os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
  start = time.perf_counter()
  with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False,
                                   dir=os.path.dirname(os.path.abspath(model_path))) as f:
    f.write("\n".join(lines) + "\n")
    train_file = f.name
  kwargs = dict(lr=params.lr, epoch=params.epoch, dim=params.dim, wordNgrams=params.word_ngrams,
                minCount=params.min_count, minn=params.minn, maxn=params.maxn, bucket=params.bucket, loss=params.loss,
                thread=params.thread, seed=params.seed, verbose=0)
  nan_retries = 0

  def train(tmp):
    nonlocal nan_retries
    while True:
      # fasttext-numpy2-wheel 0.9.2 raises "Encountered NaN" at random once a process has allocated and freed
      # memory (a long-lived process then fails on most calls; fresh processes succeed, and successful
      # single-thread runs are bit-identical). So training runs in a fresh spawned process, retried on NaN.
      proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, train_file, json.dumps(kwargs), tmp],
                            capture_output=True, text=True)
      if proc.returncode == 0:
        return
      error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
      if "NaN" not in error or nan_retries >= MAX_NAN_RETRIES:
        raise RuntimeError(f"fastText training failed after {nan_retries} retries: {error}")
      nan_retries += 1

  try:
    write_atomic(model_path, train)
  finally:
    os.remove(train_file)
  seconds = time.perf_counter() - start
  metadata = {
      "params": dataclasses.asdict(params),
      "num_positives": len(pos),
      "num_negatives": len(neg),
      "labels": {"math": MATH_LABEL, "other": OTHER_LABEL},
      "train_seconds": round(seconds, 3),
      "nan_retries": nan_retries,
      "normalisation": "NFKC, lower-case, symbols split off, whitespace collapsed (see classifier.normalize_text)",
      **(extra_metadata or {}),
  }
  write_json_atomic(model_path + ".json", metadata)
  return metadata


# Child-process body of train_classifier (only fastText is imported: starts in a fraction of a second).
_TRAIN_SCRIPT = """
import json, sys
import fasttext
train_file, kwargs, out_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
fasttext.train_supervised(input=train_file, **kwargs).save_model(out_path)
"""


def load_classifier(model_path: str):
  """Load a fastText model (local path) and check it has the math label."""
  import fasttext
  model = fasttext.load_model(model_path)
  if MATH_LABEL not in model.labels:
    raise ValueError(f"{model_path}: model has labels {model.labels}, expected {MATH_LABEL}")
  return model


def math_probability(labels: Sequence[str], probs: np.ndarray) -> float:
  """P(math) from one fastText prediction with k=2 (fastText may return 1.00001; clipped to [0, 1])."""
  for label, p in zip(labels, probs):
    if label == MATH_LABEL:
      return float(min(max(p, 0.0), 1.0))
  return 0.0


def score_texts(model, texts: Sequence[str], max_chars: int = 20_000) -> np.ndarray:
  """P(math) for each text, shape [len(texts)]; one batched fastText call (predict accepts a list)."""
  if not texts:
    return np.zeros((0,), np.float32)
  labels, probs = model.predict([normalize_text(t, max_chars) for t in texts], k=2)
  return np.array([math_probability(l, p) for l, p in zip(labels, probs)], np.float32)

