"""Pipeline throughput: packed tokens/s of the Grain pre-training and SFT pipelines at the tiny and ~60M (M) shapes.

Real sentencepiece tokenizers (trained here on the shared data at each config's vocab size) and real text (GSM8K and
MATH train, DCLM web pages). The train-step side of the comparison (pipeline tokens/s >= 10x what a train step
consumes) imports `measure_pipeline` from here.

  python -m benchmarks.data_pipeline            # prints Markdown rows
"""
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dsmath.data import batch_stats, builtin_sft_sources, make_pretrain_iterator, make_sft_iterator, train_sentencepiece
from dsmath.data.sources import iter_source_texts

# name -> (vocab, batch, seq_len): tiny preset's vocab; M = ../shared/BENCHMARK-SHAPES.md "~60M config", 8 x 512.
SHAPES = {"tiny": (512, 8, 512), "M": (32000, 8, 512)}
PRETRAIN_SOURCES = {
    "math_gsm8k": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k", "weight": 0.3},
    "math_math": {"path": "shared:math/train.jsonl", "formatter": "math", "weight": 0.4},
    "web": {"path": "shared:web/dclm_*_data.jsonl", "weight": 0.3},
}


def make_tokenizer(vocab: int, workdir: Path):
  return train_sentencepiece(iter_source_texts(PRETRAIN_SOURCES), workdir / f"spm{vocab}.model", vocab_size=vocab,
                             max_chars=3_000_000)


def measure_pipeline(kind: str, tokenizer, batch: int, seq_len: int, *, batches: int = 20, reps: int = 5,
                     num_workers: int = 0) -> dict:
  """Median tokens/s (batch x seq_len slots per batch) over `reps` runs of `batches` batches, after warm-up."""
  if kind == "pretrain":
    cfg = {"sources": PRETRAIN_SOURCES, "seq_len": seq_len, "batch_size": batch, "num_workers": num_workers}
    it = make_pretrain_iterator(cfg, tokenizer, process_index=0, process_count=1)
  else:
    cfg = {"sources": builtin_sft_sources(), "seq_len": seq_len, "batch_size": batch, "num_workers": num_workers}
    it = make_sft_iterator(cfg, tokenizer, process_index=0, process_count=1)
  for _ in range(5):
    next(it)
  rates, effs = [], []
  for _ in range(reps):
    t = time.perf_counter()
    for _ in range(batches):
      effs.append(batch_stats(next(it))["packing_efficiency"])
    rates.append(batches * batch * seq_len / (time.perf_counter() - t))
  return {"tokens_per_s": statistics.median(rates), "packing_efficiency": statistics.mean(effs)}


def main() -> int:
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, (vocab, batch, seq_len) in SHAPES.items():
      tok = make_tokenizer(vocab, Path(tmp))
      for kind in ("pretrain", "sft"):
        r = measure_pipeline(kind, tok, batch, seq_len)
        rows.append({"shape": name, "kind": kind, "vocab": tok.vocab_size, "batch": batch, "seq_len": seq_len, **r})
  print("| shape | pipeline | tokenizer vocab | batch x seq | tokens/s (median of 5) | packing efficiency |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['shape']} | {r['kind']} | {r['vocab']} | {r['batch']} x {r['seq_len']} | {r['tokens_per_s']:,.0f} | "
          f"{r['packing_efficiency']:.3f} |")
  print(json.dumps(rows), file=sys.stderr)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
