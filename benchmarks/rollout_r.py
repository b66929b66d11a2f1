"""Rollout R (../shared/BENCHMARK-SHAPES.md): sampling at realistic RL rollout lengths, same weights, one process.

Every row ends exactly at its target length (../shared/tools/rollout_lengths.py) on every side, so every side
generates the same useful tokens:
- dsmath static: `engine.sample_arrays`, one static batch of all rows (today's engine), each row ended by its budget;
- dsmath continuous: `continuous.sample_arrays` (`--slots` cache slots, refilled as rows finish), same budgets;
- HF generate: a static batch (`model.generate`, KV cache), EOS forced at each row's target by a LogitsProcessor;
- HF continuous batching: transformers' ContinuousBatchingManager (`init_continuous_batching`), one request per row
  with max_new_tokens = its target (EOS disabled, so it ends there by length).
Prompts: 64 random tokens per question, shared by its G samples; temperature 1.0, no top-k/top-p; float32;
torch.set_num_threads(2). Reported: useful new tokens/s = sum of targets / median wall time (of --reps after a warm-up
run), the useful share of row-steps (tokens sampled for a row, counting every row a step computes: static =
rows x longest row; continuous = one first token per row off the prefill + the slots each decode step runs; HF's
continuous batching schedules by token budget and reports none), and the peak rise of the process's resident memory
during a run over its level before (sampled every 5 ms).

  python -m benchmarks.rollout_r --shape gsm8k          # R-GSM8K: model S, 16 GSM8K questions x G 8, budget 512
  python -m benchmarks.rollout_r --shape math_g64       # R-MATH-G64: model S, 4 MATH questions x G 64, budget 1024
  python -m benchmarks.rollout_r --shape gsm8k_m        # model M, 8 GSM8K questions x G 8, budget 512
  python -m benchmarks.rollout_r --smoke                # tiny model, 4 questions x G 4, lengths / 4: checks it runs
AVX2 emulation (both sides in one run): XLA_FLAGS=--xla_cpu_max_isa=AVX2 ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python -m benchmarks.rollout_r --shape gsm8k
"""
import argparse
import os
import statistics
import tempfile
import threading
import time

import jax
import numpy as np
import psutil
import torch
import transformers

from dsmath import model
from dsmath.sample import Temperature, continuous, engine
from benchmarks.forced_lengths import SHAPES, eos_at_targets, target_lengths

PROMPT_LEN = 64
EOS_ID = 2  # the HF peers' EOS; dsmath ends rows by budget and samples no EOS


class PeakRSS:
  """Peak resident memory of this process while open, sampled every 5 ms; `.rise` = peak - level at entry (bytes)."""

  def __enter__(self):
    self.proc = psutil.Process()
    self.base = self.peak = self.proc.memory_info().rss
    self.done = threading.Event()
    self.thread = threading.Thread(target=self._poll, daemon=True)
    self.thread.start()
    return self

  def _poll(self):
    while not self.done.wait(0.005):
      self.peak = max(self.peak, self.proc.memory_info().rss)

  def __exit__(self, *exc):
    self.done.set()
    self.thread.join()
    self.peak = max(self.peak, self.proc.memory_info().rss)
    self.rise = self.peak - self.base


def timed(fn, reps: int):
  """(median wall seconds over reps after one warm-up run, largest RSS rise of a run, last result)."""
  out = fn()
  times, rise = [], 0
  for _ in range(reps):
    with PeakRSS() as mem:
      t = time.perf_counter()
      out = fn()
      times.append(time.perf_counter() - t)
    rise = max(rise, mem.rise)
  return statistics.median(times), rise, out


def dsmath_side(cfg, params, prompts, targets, group, budget, slots, kind, reps):
  tokens, lengths = prompts, np.full((len(prompts),), PROMPT_LEN, np.int32)
  keys = iter(range(1, 10_000))
  common = dict(max_new_tokens=budget, strategy=Temperature(1.0), num_samples=group, budgets=targets)

  def run():
    rng = jax.random.key(next(keys))
    if kind == "static":
      out = engine.sample_arrays(cfg, params, tokens, lengths, rng=rng, **common)
    else:
      out = continuous.sample_arrays(cfg, params, tokens, lengths, rng=rng, slots=slots, **common)
    return {k: np.asarray(v) for k, v in out.items()}

  t, rise, out = timed(run, reps)
  assert (out["lengths"][:len(targets)] == targets).all(), "a row did not end at its target"
  rows = len(targets)
  row_steps = rows * int(out["steps"]) if kind == "static" else rows + int(out["row_steps"])
  return t, rise, targets.sum() / row_steps


def hf_generate_side(hf, prompts, targets, group, budget, reps):
  ids = torch.from_numpy(np.repeat(prompts, group, axis=0).astype(np.int64))
  forcing = transformers.LogitsProcessorList([eos_at_targets(targets, PROMPT_LEN, EOS_ID)])

  def run():
    with torch.no_grad():
      return hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                         top_p=1.0, max_new_tokens=budget, use_cache=True, pad_token_id=0, eos_token_id=EOS_ID,
                         logits_processor=forcing)

  t, rise, out = timed(run, reps)
  new = out[:, PROMPT_LEN:].numpy()
  ends = np.argmax(new == EOS_ID, axis=1) + 1
  assert (ends == targets).all(), "HF generate: a row did not end with EOS at its target"
  return t, rise, targets.sum() / (len(targets) * new.shape[1])


def hf_continuous_side(hf, prompts, targets, group, budget, reps):
  """transformers' continuous batching, or the error it raised on this machine."""
  gen = transformers.GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=budget,
                                      eos_token_id=-1, pad_token_id=0)
  rows = [prompts[i // group].tolist() for i in range(len(targets))]
  try:
    manager = hf.init_continuous_batching(generation_config=gen)
    manager.start()
  except Exception as e:  # noqa: BLE001 -- recorded in the table: whether the peer runs on CPU is the finding
    return f"{type(e).__name__}: {e}"
  try:
    def run():
      want = {manager.add_request(row, max_new_tokens=int(n), eos_token_id=-1): int(n)
              for row, n in zip(rows, targets)}
      got = {}
      while len(got) < len(want):
        res = manager.get_result(timeout=600)
        if res is None:
          raise RuntimeError(f"HF continuous batching returned nothing for 600 s "
                             f"(fatal error: {manager.background_thread_status.fatal_error})")
        if res.is_finished():
          got[res.request_id] = len(res.generated_tokens)
      assert all(got[k] == n for k, n in want.items()), "HF continuous batching: a row did not end at its target"

    t, rise, _ = timed(run, reps)
    return t, rise, None
  except Exception as e:  # noqa: BLE001
    return f"{type(e).__name__}: {e}"
  finally:
    manager.stop(block=True)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shape", choices=sorted(SHAPES), default="gsm8k")
  ap.add_argument("--slots", type=int, default=0, help="dsmath continuous cache slots (0: engine.default_slots)")
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--sides", default="static,continuous,hf,hf_cb")
  ap.add_argument("--smoke", action="store_true", help="tiny model, 4 questions x G 4, the targets / 4, 4 slots, 1 rep")
  args = ap.parse_args()
  dataset, questions, group, budget, preset = SHAPES[args.shape]
  if args.smoke:
    questions, group, preset, args.reps = 4, 4, "tiny", 1
  torch.set_num_threads(2)
  targets = target_lengths(dataset, questions, group, budget)
  if args.smoke:
    targets, budget = np.maximum(targets // 4, 2), budget // 4
  slots = args.slots or (4 if args.smoke else engine.default_slots(len(targets)))
  cfg = model.ModelConfig.preset(preset)
  params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))
  prompts = np.random.default_rng(0).integers(3, cfg.vocab_size, (questions, PROMPT_LEN)).astype(np.int32)
  with tempfile.TemporaryDirectory() as tmp:
    model.to_hf(cfg, params, tmp)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
  ours = np.asarray(model.logits(cfg, params, prompts[:2])[:, -1])
  with torch.no_grad():
    theirs = hf(torch.from_numpy(prompts[:2].astype(np.int64))).logits[:, -1].numpy()
  diff = float(np.abs(ours - theirs).max())
  assert diff < 1e-3, f"HF and dsmath logits differ by {diff}"

  print(f"jax {jax.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"Rollout R {args.shape}{' (smoke)' if args.smoke else ''}: model {preset}, {questions} {dataset} questions x "
        f"G {group} = {len(targets)} rows, budget {budget}, targets mean {targets.mean():.1f} max {targets.max()}, "
        f"sum {targets.sum()}; dsmath continuous slots {slots}; max logit diff {diff:.1e}; medians of {args.reps}")
  print("| side | wall s | useful new tok/s | useful share of row-steps | peak RSS rise MiB |")
  print("|---|---|---|---|---|")
  common = (prompts, targets, group, budget)
  sides = {"static": lambda: dsmath_side(cfg, params, *common, slots, "static", args.reps),
           "continuous": lambda: dsmath_side(cfg, params, *common, slots, "continuous", args.reps),
           "hf": lambda: hf_generate_side(hf, *common, args.reps),
           "hf_cb": lambda: hf_continuous_side(hf, *common, args.reps)}
  names = {"static": "dsmath static", "continuous": f"dsmath continuous ({slots} slots)", "hf": "HF generate",
           "hf_cb": "HF continuous batching"}
  speed = {}
  for side in args.sides.split(","):
    res = sides[side]()
    if isinstance(res, str):
      print(f"| {names[side]} | failed: {res} | | | |", flush=True)
      continue
    t, rise, share = res
    speed[side] = targets.sum() / t
    share = "n/a" if share is None else f"{share:.2f}"
    print(f"| {names[side]} | {t:.2f} | {speed[side]:,.0f} | {share} | {rise / 2 ** 20:,.0f} |", flush=True)
  if "continuous" in speed:
    print("dsmath continuous vs: " + ", ".join(f"{names[s]} {speed['continuous'] / v:.2f}x" for s, v in speed.items()
                                               if s != "continuous"))
  print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
