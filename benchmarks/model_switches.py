"""What the architecture switches cost: the model's train step (forward + backward + clipped AdamW) and the sampler
at the standard shapes (../shared/BENCHMARK-SHAPES.md), with every switch off against the code before the switches
(a checkout of the baseline commit), and with each switch on.

  python -m benchmarks.model_switches --baseline <a dsmath checkout without the switches> [--reps 3]

Train step: presets S and M, batch 8 x 512, float32. Sampler: preset S, 32 prompts of 64 random tokens, 128 new
tokens forced, temperature 1.0. Variants: "before" (the baseline checkout's dsmath), "off" (this checkout, switches
off), and this checkout with qkv_bias (Qwen2), qk_norm (Qwen3), tie_embeddings, rope_type llama3. Each variant runs
in its own process (the baseline imports its own dsmath); the rounds go through the variants in turn, so load from
other processes on a shared machine hits them alike; each process reports the median of --reps timed runs after
a warm-up, and the table the median over rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"before": {}, "off": {}, "qkv_bias": {"qkv_bias": True}, "qk_norm": {"qk_norm": True},
            "tie_embeddings": {"tie_embeddings": True},
            "rope llama3": {"rope_type": "llama3", "rope_factor": 8.0, "rope_original_max_positions": 256}}
TRAIN_PRESETS, BATCH, SEQ = ("S", "M"), 8, 512
SAMPLE_PRESET, PROMPTS, PROMPT_LEN, NEW_TOKENS = "S", 32, 64, 128


def worker(overrides: dict, reps: int) -> dict:
  """Median seconds of each timed program with the model switches `overrides`, in this process's dsmath."""
  import jax
  import numpy as np
  from benchmarks.model_train_step import dsmath_step
  from benchmarks.timing import median_time
  from dsmath import model
  from dsmath.sample import Temperature, generate
  out = {}
  for preset in TRAIN_PRESETS:
    out[f"train step {preset}"] = median_time(dsmath_step(model.ModelConfig.preset(preset, **overrides), BATCH, SEQ),
                                              reps)
  cfg = model.ModelConfig.preset(SAMPLE_PRESET, **overrides)
  params = model.init_params(cfg, jax.random.key(0))
  prompts = np.random.default_rng(0).integers(3, cfg.vocab_size, (PROMPTS, PROMPT_LEN))
  keys = iter(range(10_000))
  out[f"sampler {SAMPLE_PRESET}"] = median_time(
      lambda: generate(cfg, params, prompts, max_new_tokens=NEW_TOKENS, strategy=Temperature(1.0),
                       rng=jax.random.key(next(keys)), min_bucket=PROMPT_LEN), reps)
  return out


def run_variant(name: str, baseline: str, reps: int) -> dict:
  code = baseline if name == "before" else ROOT
  env = dict(os.environ, PYTHONPATH=code)
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(VARIANTS[name]),
                         "--reps", str(reps)], cwd=code, env=env, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"variant {name!r} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--baseline", help="a dsmath checkout without the switches (e.g. a worktree of the main branch)")
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--rounds", type=int, default=1)
  ap.add_argument("--worker", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker is not None:
    print(json.dumps(worker(json.loads(args.worker), args.reps)))
    return
  if not args.baseline:
    ap.error("--baseline is required")
  times: dict = {name: [] for name in VARIANTS}
  for _ in range(args.rounds):
    for name in VARIANTS:
      times[name].append(run_variant(name, args.baseline, args.reps))
      print(f"{name}: {times[name][-1]}", flush=True)
  programs = list(times["off"][0])
  med = {n: {p: statistics.median(r[p] for r in rows) for p in programs} for n, rows in times.items()}
  print(f"\nload average {os.getloadavg()[0]:.1f}; seconds (median), and relative to `before`")
  print("| variant | " + " | ".join(programs) + " |")
  print("|---" * (len(programs) + 1) + "|")
  for n in VARIANTS:
    cells = [f"{med[n][p]:.3f} s ({med[n][p] / med['before'][p]:.2f}x)" for p in programs]
    print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
