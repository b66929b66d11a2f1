"""Train-step token consumption vs the Grain pipeline's token production, tiny and M (~60M) presets, 8 x 512.

In one run: the jitted, donating train step (dsmath.train.make_train_step, AdamW, float32) on real pipeline batches,
timed per step (median of >= 5 after warm-up), and the pipeline's tokens/s from the data engineer's
benchmarks/data_pipeline.py (`measure_pipeline`, same tokenizer, same shape). The pipeline must produce >= 10x what
the step consumes. MFU at M against the measured float32 matmul peak (4096^3 jitted matmul, as in
../shared/BENCHMARK-SHAPES.md); FLOPs per step = (6 N + 12 layers hidden seq) tokens, N = params without the input
embedding.

  python -m benchmarks.train_throughput          # prints Markdown rows
"""
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import PRETRAIN_SOURCES, SHAPES, make_tokenizer, measure_pipeline  # noqa: E402

from dsmath import model  # noqa: E402
from dsmath.data import make_pretrain_iterator  # noqa: E402
from dsmath.train import (flops_per_step, make_optimizer, make_train_step, measure_peak_flops, new_state,  # noqa: E402
                          next_token_loss, resolve_config)


def measure_train(preset: str, tokenizer, batch: int, seq_len: int, *, steps: int = 7, warmup: int = 2) -> dict:
  cfg = model.ModelConfig.preset(preset, vocab_size=max(tokenizer.vocab_size, 8), max_positions=max(seq_len, 512))
  c = resolve_config({"job": "pretrain", "train": {"total_steps": 1000}})
  opt, _ = make_optimizer(c.optimizer, 1000)
  step = make_train_step(cfg, opt, next_token_loss(cfg))
  state = new_state(step, cfg, opt, seed=0)
  it = make_pretrain_iterator({"sources": PRETRAIN_SOURCES, "seq_len": seq_len, "batch_size": batch}, tokenizer,
                              process_index=0, process_count=1)
  batches = [next(it) for _ in range(steps + warmup)]
  times = []
  for i, b in enumerate(batches):
    t = time.perf_counter()
    state, m = step(state, step.shard_batch(b))
    jax.block_until_ready(m["loss"])
    if i >= warmup:
      times.append(time.perf_counter() - t)
  dt = statistics.median(times)
  return {"step_s": dt, "train_tokens_per_s": batch * seq_len / dt, "flops_per_step": flops_per_step(cfg, batch,
                                                                                                    seq_len),
          "num_params": cfg.num_params()}


def main() -> int:
  peak = measure_peak_flops(n=4096, reps=5)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, (vocab, batch, seq_len) in SHAPES.items():
      tok = make_tokenizer(vocab, Path(tmp))
      pipe = measure_pipeline("pretrain", tok, batch, seq_len)
      train = measure_train(name, tok, batch, seq_len)
      rows.append({"preset": name, "batch": batch, "seq_len": seq_len, **train, **pipe,
                   "ratio": pipe["tokens_per_s"] / train["train_tokens_per_s"],
                   "mfu": train["flops_per_step"] / train["step_s"] / peak})
  print(f"measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
  print("| preset | batch x seq | train step s (median of 7) | train tokens/s | pipeline tokens/s (median of 5) | "
        "pipeline / train | train-step MFU |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['preset']} | {r['batch']} x {r['seq_len']} | {r['step_s']:.3f} | {r['train_tokens_per_s']:,.0f} | "
          f"{r['tokens_per_s']:,.0f} | {r['ratio']:.1f}x | {r['mfu']:.3f} |")
  print(json.dumps({"peak_flops": peak, "rows": rows}), file=sys.stderr)
  return 0 if all(r["ratio"] >= 10 for r in rows) else 1


if __name__ == "__main__":
  raise SystemExit(main())
