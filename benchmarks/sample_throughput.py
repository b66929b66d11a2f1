"""Sampling throughput: dsmath.sample.generate vs HF transformers `generate` (KV cache) on the same weights.

Standard sampling shapes (../shared/BENCHMARK-SHAPES.md): prompts of 64 random tokens, 128 new tokens forced (no EOS),
temperature 1.0, no top-k/top-p; batch 32 and batch 1. Weights are exported with dsmath.model.to_hf and loaded as
LlamaForCausalLM. Both are timed in this process, one after the other: median of --reps runs after one warm-up.

  python -m benchmarks.sample_throughput --presets tiny,S,M --reps 5
"""
import argparse
import os
import tempfile

import jax
import numpy as np
import torch
import transformers

from dsmath import model
from dsmath.sample import Temperature, generate
from benchmarks.timing import median_time

PROMPT_LEN, NEW_TOKENS = 64, 128


def bench(preset: str, batches, reps: int):
  cfg = model.ModelConfig.preset(preset)
  params = model.init_params(cfg, jax.random.key(0))
  with tempfile.TemporaryDirectory() as tmp:
    model.to_hf(cfg, params, tmp)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
  rng = np.random.default_rng(0)
  rows = []
  for batch in batches:
    prompts = rng.integers(3, cfg.vocab_size, (batch, PROMPT_LEN), dtype=np.int64)
    # Same weights: the two models' next-token logits on the prompts agree.
    ours = np.asarray(model.logits(cfg, params, prompts[:2])[:, -1])
    with torch.no_grad():
      theirs = hf(torch.from_numpy(prompts[:2])).logits[:, -1].numpy()
    diff = float(np.abs(ours - theirs).max())
    assert diff < 1e-3, f"{preset}: HF and dsmath logits differ by {diff}"

    keys = iter(range(10_000))
    run_ours = lambda: generate(cfg, params, prompts, max_new_tokens=NEW_TOKENS, strategy=Temperature(1.0),
                                rng=jax.random.key(next(keys)), min_bucket=PROMPT_LEN)
    out = run_ours()
    assert out.tokens.shape == (batch, NEW_TOKENS) and (out.lengths == NEW_TOKENS).all()
    t_ours = median_time(run_ours, reps)

    ids = torch.from_numpy(prompts)
    mask = torch.ones_like(ids)

    def run_hf():
      with torch.no_grad():
        res = hf.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                          min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS, use_cache=True, pad_token_id=0)
      assert res.shape == (batch, PROMPT_LEN + NEW_TOKENS)

    t_hf = median_time(run_hf, reps)
    tok = batch * NEW_TOKENS
    rows.append((preset, batch, tok / t_ours, tok / t_hf, t_hf / t_ours, diff))
    print(f"| {preset} | {batch} | {tok / t_ours:,.0f} | {tok / t_hf:,.0f} | {t_hf / t_ours:.2f}x | {diff:.1e} |",
          flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--presets", default="tiny,S,M")
  parser.add_argument("--batches", default="32,1")
  parser.add_argument("--reps", type=int, default=5)
  args = parser.parse_args()
  torch.set_num_threads(2)
  print(f"jax {jax.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
  print("| preset | batch | dsmath new tok/s | HF generate new tok/s | ratio | max logit diff |")
  print("|---|---|---|---|---|---|")
  for preset in args.presets.split(","):
    bench(preset, [int(b) for b in args.batches.split(",")], args.reps)
  print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
