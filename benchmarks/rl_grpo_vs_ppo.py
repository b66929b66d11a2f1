"""GRPO vs PPO: step time and per-device memory of one RL step on the same model, task, reward and number of
completions, in one run, through dsmath's public RL API only.

The paper's claim (sec. 4.1): GRPO drops PPO's value model (a second transformer with its AdamW state, its forward over
the rollout and its update), so it needs less memory and time. Both sides run the RL loop's own step, `state, metrics
= rl_step(state, questions)` (`dsmath.rl.RLStep`): rollout, reward, reference log-probs (and for PPO the values and
GAE), advantages, the donated policy update (and for PPO the value update). Same weights, the same reward (fraction of
even token ids, forced full-length completions), the same completions per step: GRPO samples G for each of P
questions, PPO one for each of P x G questions (the paper's PPO samples one output a question). Steps alternate
between the two so load changes on the machine hit both alike; medians after one warm-up step each.

Memory comes from `dsmath.rl.plan.plan_rl`: every program of the step compiled for the same device, XLA's memory
analysis; peak = resident RL state (params + AdamW moments of each trained model, the frozen reference) + the largest
phase's extra bytes (arguments that are not state, fresh outputs, scratch).

python -m benchmarks.rl_grpo_vs_ppo [--model S] [--prompts 16] [--group 8] [--prompt-len 64] [--completion-len 128]
"""
import argparse
import statistics
import tempfile
import time

import jax
import numpy as np

from dsmath import model
from dsmath import rl
from dsmath.rl.plan import plan_rl
from benchmarks.rl_words import HFTokenizerAdapter, build_tokenizer, rl_config, word_prompts
from benchmarks.shapes import add_grpo_shape_args

MIB = 2 ** 20


def main():
  ap = argparse.ArgumentParser()
  add_grpo_shape_args(ap)
  args = ap.parse_args()
  cfg = model.ModelConfig.preset(args.model)
  tok = HFTokenizerAdapter(build_tokenizer(cfg.vocab_size))
  rows = args.prompts * args.group
  texts = word_prompts(cfg.vocab_size, rows * (args.reps + 1), args.prompt_len)
  params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))
  per_step = {"grpo": args.prompts, "ppo": rows}  # questions a step: the same number of completions
  steps, states, plans = {}, {}, {}
  for method in ("grpo", "ppo"):
    config = rl_config(texts, tempfile.mkdtemp(prefix=f"rl_grpo_vs_ppo_{method}_"), method=method,
                       questions_per_step=per_step[method], group=args.group, completion_len=args.completion_len)
    run = rl.resolve_rl_config(config)
    task = rl.build_task(run.config.task, tok, seed=0)
    assert task.prompt_len == args.prompt_len, task.prompt_len
    steps[method] = rl.RLStep(run, cfg, task, total_updates=args.reps + 1)
    states[method] = steps[method].init_state(params, seed=0)
    plans[method] = plan_rl(run, cfg, steps[method].mesh, prompt_len=task.prompt_len)
  times = {m: [] for m in steps}
  parts = {m: [] for m in steps}
  for step in range(args.reps + 1):
    for method, rl_step in steps.items():
      q = per_step[method]
      t0 = time.perf_counter()
      states[method], m = rl_step(states[method], np.arange(step * q, (step + 1) * q))
      jax.block_until_ready(states[method]["policy"]["params"])
      total = time.perf_counter() - t0
      assert m["completion_len_mean"] == args.completion_len, m
      print(f"{method} step {step}: {total:.2f} s (rollout {m['rollout_s']:.2f} s, scoring {m['scoring_s']:.2f} s, "
            f"update {m['update_s']:.2f} s)", flush=True)
      if step:  # step 0 = warm-up (compilation)
        times[method].append(total)
        parts[method].append((m["rollout_s"], m["scoring_s"], m["update_s"]))
  for s in steps.values():
    s.close()
  med = {m: statistics.median(t) for m, t in times.items()}
  part = {m: [statistics.median(x) for x in zip(*p)] for m, p in parts.items()}
  for method, p in plans.items():
    print(f"{method}: resident " + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in p.resident.items()) +
          "; phases (extra MiB) " + ", ".join(f"{ph.name} {ph.extra_bytes / MIB:.1f}" for ph in p.phases))
  g, p = plans["grpo"], plans["ppo"]
  ms = lambda t: f"{t * 1e3:.0f} ms"  # noqa: E731
  cell = lambda m: (f"{ms(med[m])} (rollout {ms(part[m][0])}, scoring {ms(part[m][1])}, update {ms(part[m][2])}); "  # noqa
                    f"resident {plans[m].resident_bytes / MIB:.1f} MiB, peak {plans[m].peak_bytes / MIB:.1f} MiB")
  print(f"| model {args.model}, {rows} completions (GRPO {args.prompts} x G {args.group}, PPO {rows} x 1), prompt "
        f"{args.prompt_len}, completion {args.completion_len} | GRPO {cell('grpo')} | PPO {cell('ppo')} | "
        f"PPO/GRPO time {med['ppo'] / med['grpo']:.2f}x (after the rollout "
        f"{(med['ppo'] - part['ppo'][0]) / (med['grpo'] - part['grpo'][0]):.2f}x), resident "
        f"{p.resident_bytes / g.resident_bytes:.2f}x, peak {p.peak_bytes / g.peak_bytes:.2f}x |")


if __name__ == "__main__":
  main()
