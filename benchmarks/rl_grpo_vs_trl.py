"""GRPO step time: dsmath's public `rl_step` vs HF TRL's GRPOTrainer, same model weights, batch, G and lengths, in one run.

One GRPO step = rollout (G samples per prompt) + rewards + group advantages + reference log-probs + one optimizer
step (AdamW) on the GRPO loss. Both sides train exactly the same weights: the dsmath policy is exported with
`dsmath.model.to_hf` and TRL loads it from a local directory, beside a word-level tokenizer of the same vocabulary.
Prompts are `prompt_len` tokens (BOS + random words); completions are forced to `completion_len` tokens on both sides
(dsmath: no EOS id; TRL: min_new_tokens). Reward (identical on both sides): fraction of even completion token ids,
registered as an outcome reward of dsmath's REWARDS. The dsmath step is the public API only: `resolve_rl_config`,
`build_task` (a JSONL question set), `RLStep`, `init_state`, then `state, metrics = rl_step(state, questions)`.
TRL: `trainer.train()` for 1 + reps steps; a callback times each step, a subclass times generation (`_generate`).

--lengths gsm8k: Rollout R-GSM8K (../shared/BENCHMARK-SHAPES.md): row r of every step ends at the r-th target of the
length table (16 questions x G 8, budget 512: pass --completion-len 512) instead of the full length; TRL through a
LogitsProcessor forcing EOS there, dsmath through its sampler's per-row budgets (`dsmath_forced_lengths`, whichever
engine the RL step samples with). --set key=value overrides the dsmath RL config; each --variant times dsmath once
more with its own overrides beside the one TRL run (e.g. rollout.batching=static / continuous).

python -m benchmarks.rl_grpo_vs_trl [--prompts 16] [--group 8] [--prompt-len 64] [--completion-len 128] [--reps 5]
python -m benchmarks.rl_grpo_vs_trl --lengths gsm8k --completion-len 512 [--set rollout.<key>=<value> ...] \
    [--variant rollout.batching=static --variant rollout.batching=continuous]
python -m benchmarks.rl_grpo_vs_trl --lengths gsm8k --smoke      # tiny model, the table's lengths / 4, 1 rep
"""
import argparse
import ast
import contextlib
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from dsmath import model
from dsmath import rl
from benchmarks.forced_lengths import SHAPES, dsmath_forced_lengths, eos_at_targets, target_lengths
from benchmarks.rl_words import HFTokenizerAdapter, build_tokenizer, even_fraction, rl_config, word_prompts
from benchmarks.shapes import add_grpo_shape_args


def trl_reward(completions, completion_ids, **kwargs):
  return [float(even_fraction(ids)) for ids in completion_ids]


def time_dsmath(args, cfg, tok, texts, workdir, params, targets, sets) -> tuple[float, float]:
  """Median step and generation seconds of dsmath's public rl_step over args.reps steps after a warm-up step, with
  the RL config overrides `sets` (KEY=VALUE, values parsed as Python literals)."""
  config = rl_config(texts, workdir, method="grpo", questions_per_step=args.prompts, group=args.group,
                     completion_len=args.completion_len)
  for item in sets:
    key, value = item.split("=", 1)
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    try:
      node[leaf] = ast.literal_eval(value)
    except (ValueError, SyntaxError):  # a bare word: a string
      node[leaf] = value
  run = rl.resolve_rl_config(config)
  task = rl.build_task(run.config.task, tok, seed=0)
  assert task.prompt_len == args.prompt_len, task.prompt_len
  rl_step = rl.RLStep(run, cfg, task, total_updates=args.reps + 1)
  state = rl_step.init_state(params, seed=0)
  ds_times, ds_gen = [], []
  want_len = args.completion_len if targets is None else float(targets.mean())
  label = " ".join(sets) or "default"
  for step in range(args.reps + 1):
    t0 = time.perf_counter()
    with contextlib.nullcontext() if targets is None else dsmath_forced_lengths(targets):
      state, m = rl_step(state, np.arange(step * args.prompts, (step + 1) * args.prompts))
    jax.block_until_ready(state["policy"]["params"])
    total = time.perf_counter() - t0
    assert abs(m["completion_len_mean"] - want_len) < 1e-3, m
    print(f"dsmath [{label}] step {step}: {total:.2f} s (generation {m['rollout_s']:.2f} s, scoring "
          f"{m['scoring_s']:.2f} s, update {m['update_s']:.2f} s)", flush=True)
    if step:  # step 0 = warm-up (compilation)
      ds_times.append(total)
      ds_gen.append(m["rollout_s"])
  rl_step.close()
  return statistics.median(ds_times), statistics.median(ds_gen)


def main():
  ap = argparse.ArgumentParser()
  add_grpo_shape_args(ap)
  ap.add_argument("--skip-trl", action="store_true")
  ap.add_argument("--lengths", choices=["full"] + sorted(SHAPES), default="full",
                  help="full: every completion completion-len tokens; a Rollout R shape: its length table")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                  help="dsmath RL config override, e.g. rollout.max_rows=32 (values parsed as Python literals)")
  ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                  help="time dsmath once per --variant (its overrides on top of --set) beside one TRL run, e.g. "
                       "--variant rollout.batching=static --variant rollout.batching=continuous")
  ap.add_argument("--smoke", action="store_true", help="tiny model, 1 rep; with --lengths: the lengths / 4")
  args = ap.parse_args()
  if args.smoke:
    args.model, args.reps = "tiny", 1
  targets = None
  if args.lengths != "full":
    dataset, questions, group, budget, _ = SHAPES[args.lengths]
    targets = target_lengths(dataset, questions, group, budget)
    if args.smoke:
      targets, budget = np.maximum(targets // 4, 2), budget // 4
      args.completion_len = budget
    if (args.prompts, args.group) != (questions, group) or args.completion_len < targets.max():
      raise SystemExit(f"--lengths {args.lengths} is {questions} prompts x G {group} with targets up to "
                       f"{targets.max()}: pass --prompts {questions} --group {group} --completion-len {budget}")
  import torch
  torch.set_num_threads(2)

  cfg = model.ModelConfig.preset(args.model)
  hf_tok = build_tokenizer(cfg.vocab_size)
  tok = HFTokenizerAdapter(hf_tok)
  n_prompts = args.prompts * (args.reps + 1)  # fresh prompts per step on both sides
  texts = word_prompts(cfg.vocab_size, n_prompts, args.prompt_len)
  assert all(len(tok.encode(t)) == args.prompt_len - 1 for t in texts[:4])

  # -- dsmath: the public rl_step, one GRPO step per call, for each --variant ----------------------------------------
  workdir = tempfile.mkdtemp(prefix="rl_grpo_vs_trl_")
  params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))
  hf_dir = os.path.join(workdir, "hf")
  model.to_hf(cfg, params, hf_dir)
  hf_tok.save_pretrained(hf_dir)
  shape = (f"completion {args.completion_len}" if targets is None else
           f"Rollout R {args.lengths} lengths (mean {targets.mean():.1f}, max {targets.max()})")
  rows = []
  for variant in args.variant or [""]:
    sets = args.set + [v for v in variant.split(",") if v]
    ds_med, ds_gen_med = time_dsmath(args, cfg, tok, texts, workdir, params, targets, sets)
    rows.append((f"| model {args.model}, {args.prompts} prompts x G {args.group}, prompt {args.prompt_len}, {shape}"
                 f"{' ' + ' '.join(sets) if sets else ''} | dsmath {ds_med:.2f} s (generation {ds_gen_med:.2f} s, "
                 f"rest {ds_med - ds_gen_med:.2f} s)", ds_med, ds_gen_med))
  if args.skip_trl:
    for row, _, _ in rows:
      print(row + " |")
    return

  # -- TRL GRPOTrainer on the same weights ---------------------------------------------------------------------------
  import datasets
  import transformers
  from transformers import TrainerCallback
  from trl import GRPOConfig, GRPOTrainer

  gen_times = []

  class TimedGRPOTrainer(GRPOTrainer):
    def _generate(self, prompts):
      t = time.perf_counter()
      out = super()._generate(prompts)
      gen_times.append(time.perf_counter() - t)
      return out

  step_times = []

  class StepTimer(TrainerCallback):
    def on_step_begin(self, a, s, c, **kw):
      self.t = time.perf_counter()

    def on_step_end(self, a, s, c, **kw):
      step_times.append(time.perf_counter() - self.t)
      print(f"TRL step {len(step_times) - 1}: {step_times[-1]:.2f} s (generation {gen_times[-1]:.2f} s)", flush=True)

  targs = GRPOConfig(
      output_dir=os.path.join(workdir, "trl"), per_device_train_batch_size=args.prompts * args.group,
      num_generations=args.group, max_completion_length=args.completion_len, beta=0.04, loss_type="grpo",
      learning_rate=1e-6, max_steps=args.reps + 1, gradient_accumulation_steps=1, num_iterations=1,
      temperature=1.0, top_p=1.0, top_k=0, use_vllm=False, use_cpu=True, bf16=False, report_to="none",
      gradient_checkpointing=False,  # TRL's default recomputes activations; the peer's fastest setting is off
      save_strategy="no", logging_steps=10_000, shuffle_dataset=False, dataloader_num_workers=0,
      generation_kwargs={"min_new_tokens": args.completion_len} if targets is None else {}, log_completions=False,
      seed=0)
  data = datasets.Dataset.from_dict({"prompt": ["<bos> " + t for t in texts]})
  trainer = TimedGRPOTrainer(model=hf_dir, reward_funcs=trl_reward, args=targs, train_dataset=data,
                             processing_class=hf_tok, callbacks=[StepTimer()])
  if targets is not None:  # every generate call is one step's rows (prompt-major, as the table), prompts unpadded
    generate = trainer.model.generate
    forced = transformers.LogitsProcessorList([eos_at_targets(targets, args.prompt_len, hf_tok.eos_token_id)])
    trainer.model.generate = lambda *a, **kw: generate(*a, logits_processor=forced, **kw)
  trainer.train()
  trl_med, trl_gen_med = statistics.median(step_times[1:]), statistics.median(gen_times[1:len(step_times)])
  for row, ds_med, ds_gen_med in rows:
    print(row + f" | TRL {trl_med:.2f} s (generation {trl_gen_med:.2f} s, rest {trl_med - trl_gen_med:.2f} s) | "
          f"TRL/dsmath {trl_med / ds_med:.2f}x (generation {trl_gen_med / ds_gen_med:.2f}x, "
          f"rest {(trl_med - trl_gen_med) / (ds_med - ds_gen_med):.2f}x) |")


if __name__ == "__main__":
  main()
