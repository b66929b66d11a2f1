"""Train-step throughput (forward + backward + clipped AdamW) of dsmath vs HF transformers LlamaForCausalLM (torch).

  python -m benchmarks.model_train_step [--preset M] [--batch 8] [--seq 512] [--reps 5] [--order blocks]

Standard shapes and FLOP formula: ../shared/BENCHMARK-SHAPES.md. Both sides float32 on CPU; torch uses 2 threads
and attention "sdpa". By default the reps are interleaved (ours, torch, ours, torch, ...) so load from other
processes on a shared machine hits both alike; `--order blocks` times each side's reps back to back (on a quiet
machine each side then runs on warm caches, as it would alone); medians are reported. MFU is against this
machine's float32 matmul peak measured here (a jitted 4096^3 matmul).
"""
import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dsmath.model import ModelConfig
from dsmath.train import flops_per_step, make_train_step, new_state, next_token_loss


def matmul_peak(n=4096, reps=5) -> float:
  """float32 FLOP/s of a jitted n^3 matmul on random data (median)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2.0 * n ** 3 / statistics.median(times)


def dsmath_step(cfg, batch, seq):
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4, b1=0.9, b2=0.95, weight_decay=0.1))
  step = make_train_step(cfg, opt, next_token_loss(cfg))  # jitted, state donated
  state = new_state(step, cfg, opt, seed=0)
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
  data = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": np.ones((batch, seq), np.int32),
          "positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
          "loss_mask": np.ones((batch, seq), np.float32)}
  data = step.shard_batch(data)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], data)
    return float(metrics["loss"])  # blocks until done
  return run


def torch_step(cfg, batch, seq):
  torch.manual_seed(0)
  hf = LlamaForCausalLM(LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
      max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_norm_eps,
      tie_word_embeddings=False, attn_implementation="sdpa")).float().train()
  opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
  tokens = torch.randint(0, cfg.vocab_size, (batch, seq))

  def run():
    opt.zero_grad(set_to_none=True)
    loss = hf(input_ids=tokens, labels=tokens).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
    opt.step()
    return float(loss)
  return run


def timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="M")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=512)
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--no-torch", action="store_true", help="time dsmath only")
  ap.add_argument("--order", choices=("interleaved", "blocks"), default="interleaved",
                  help="interleaved: ours, torch, ours, ...; blocks: all of ours, then all of torch's (each side "
                       "runs on caches and thread pools the other has not just used)")
  args = ap.parse_args()
  torch.set_num_threads(2)
  cfg = ModelConfig.preset(args.preset)
  tokens = args.batch * args.seq
  flops = flops_per_step(cfg, args.batch, args.seq)

  load_before = f"{os.getloadavg()[0]:.1f}"
  peak = matmul_peak()
  ours = dsmath_step(cfg, args.batch, args.seq)
  peer = None if args.no_torch else torch_step(cfg, args.batch, args.seq)
  ours()  # compile + warm-up
  if peer:
    peer()
  t_ours, t_peer = [], []
  if args.order == "blocks":
    t_ours = [timed(ours) for _ in range(args.reps)]
    t_peer = [timed(peer) for _ in range(args.reps)] if peer else []
  else:
    for _ in range(args.reps):
      t_ours.append(timed(ours))
      if peer:
        t_peer.append(timed(peer))
  peak_after = matmul_peak()  # the machine is shared: bracket the run with two peak measurements
  peak_before, peak = peak, max(peak, peak_after)
  mo = statistics.median(t_ours)
  print(f"device: {jax.devices()[0]} x{jax.device_count()}; matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"(before {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f}); FLOPs/step {flops / 1e12:.3f} T; "
        f"load average {load_before} before, {os.getloadavg()[0]:.1f} after")
  print(f"dsmath step times (s): {[round(t, 2) for t in t_ours]}")
  if peer:
    print(f"torch  step times (s): {[round(t, 2) for t in t_peer]}")
  print("| model | batch x seq | dsmath tok/s | dsmath MFU | torch tok/s | torch MFU | ratio |")
  print("|---|---|---|---|---|---|---|")
  row = f"| {args.preset} | {args.batch} x {args.seq} | {tokens / mo:,.0f} | {flops / mo / peak:.1%} |"
  if peer:
    mp = statistics.median(t_peer)
    row += f" {tokens / mp:,.0f} | {flops / mp / peak:.1%} | {mp / mo:.2f}x |"
  else:
    row += " - | - | - |"
  print(row)


if __name__ == "__main__":
  main()
