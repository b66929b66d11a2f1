"""GRPO vs PPO: peak memory and step time of one training step on the same model, batch and lengths, in one run.

The paper's claim: GRPO drops PPO's value model (a second transformer with its optimizer state, its forward at rollout
and its update), so it needs less memory and time. Both steps here start after sampling (the rollout is the same
for both): GRPO = reference log-probs + policy update; PPO = reference log-probs + values + GAE + policy update +
value update. Memory = resident train state (params + AdamW moments of every trained model, plus the frozen reference)
+ the compiled steps' temporary buffers (XLA memory analysis), which is what the step needs at its peak.

python -m benchmarks.rl_grpo_vs_ppo [--model S] [--prompts 16] [--group 8] [--prompt-len 64] [--completion-len 128]
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.rl import advantages, losses, policy
from dsmath.train import OptimizerConfig, build_step_fn, init_state, make_optimizer
from benchmarks.shapes import add_grpo_shape_args


def nbytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def temp_bytes(jitted, *args) -> int:
  analysis = jitted.lower(*args).compile().memory_analysis()
  return int(analysis.temp_size_in_bytes) if analysis is not None else 0


def main():
  ap = argparse.ArgumentParser()
  add_grpo_shape_args(ap)
  args = ap.parse_args()
  cfg = model.ModelConfig.preset(args.model)
  b, p, c = args.prompts * args.group, args.prompt_len, args.completion_len
  rng = np.random.default_rng(0)
  batch = {"prompt": jnp.asarray(rng.integers(4, cfg.vocab_size, (b, p)), jnp.int32),
           "prompt_mask": jnp.ones((b, p), jnp.float32),
           "completion": jnp.asarray(rng.integers(4, cfg.vocab_size, (b, c)), jnp.int32),
           "mask": jnp.asarray((np.arange(c)[None] < rng.integers(c // 2, c + 1, b)[:, None]), jnp.float32),
           "old_logp": jnp.asarray(np.log(rng.uniform(0.01, 1, (b, c))), jnp.float32)}
  rewards = jnp.asarray(rng.integers(0, 2, b), jnp.float32)
  lcfg = losses.LossConfig(beta=0.04)
  opt, _ = make_optimizer(OptimizerConfig(peak_lr=1e-6, schedule="constant", warmup_steps=0), 1)
  params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))
  ref = jax.tree.map(jnp.copy, params)
  logp_fn = jax.jit(lambda prm, bt: policy.completion_logprobs(cfg, prm, bt["prompt"], bt["prompt_mask"],
                                                               bt["completion"], bt["mask"])[0])
  value_fn = jax.jit(lambda prm, bt: policy.completion_scalars(cfg, prm, bt["prompt"], bt["prompt_mask"],
                                                               bt["completion"], bt["mask"], True))

  def policy_loss(name):
    def fn(prm, bt, key):
      lp = policy.completion_logprobs(cfg, prm, bt["prompt"], bt["prompt_mask"], bt["completion"], bt["mask"])[0]
      return losses.POLICY_LOSSES[name](lcfg, lp, bt)
    return fn

  def value_loss(prm, bt, key):
    v = policy.completion_scalars(cfg, prm, bt["prompt"], bt["prompt_mask"], bt["completion"], bt["mask"], True)
    return losses.ppo_value_loss(lcfg, v, bt)

  grpo_update = jax.jit(build_step_fn(opt, policy_loss("grpo")))
  ppo_update = jax.jit(build_step_fn(opt, policy_loss("ppo")))
  v_update = jax.jit(build_step_fn(opt, value_loss))
  gae = jax.jit(advantages.gae)
  pstate = init_state(params, opt, 0)
  vstate = init_state(policy.scalar_head_from_policy(jax.tree.map(jnp.copy, params), jax.random.key(1),
                                                     cfg.hidden_size), opt, 0)

  def grpo_step(state):
    bt = dict(batch, ref_logp=logp_fn(ref, batch),
              advantages=advantages.grpo_outcome(rewards, batch["mask"], group_size=args.group))
    state, m = grpo_update(state, bt)
    jax.block_until_ready(m)
    return state, bt

  def ppo_step(state, vst):
    ref_lp = logp_fn(ref, batch)
    values = value_fn(vst["params"], batch)
    tok_r = advantages.ppo_token_rewards(rewards, batch["old_logp"], ref_lp, batch["mask"], 0.04)
    adv, ret = gae(tok_r, values, batch["mask"], 1.0, 0.95)
    bt = dict(batch, ref_logp=ref_lp, advantages=adv, returns=ret, old_values=values)
    state, m = ppo_update(state, bt)
    vst, vm = v_update(vst, bt)
    jax.block_until_ready((m, vm))
    return state, vst, bt

  pstate, gbt = grpo_step(pstate)  # warm-up / compile
  pstate, vstate, pbt = ppo_step(pstate, vstate)
  g_times, p_times = [], []
  for _ in range(args.reps):  # interleaved so load changes on the shared machine hit both alike
    t = time.perf_counter()
    pstate, _ = grpo_step(pstate)
    g_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    pstate, vstate, _ = ppo_step(pstate, vstate)
    p_times.append(time.perf_counter() - t)
  g_mem = nbytes(pstate) + nbytes(ref) + max(temp_bytes(grpo_update, pstate, gbt), temp_bytes(logp_fn, ref, batch))
  p_mem = (nbytes(pstate) + nbytes(ref) + nbytes(vstate) +
           max(temp_bytes(ppo_update, pstate, pbt), temp_bytes(v_update, vstate, pbt), temp_bytes(logp_fn, ref, batch),
               temp_bytes(value_fn, vstate["params"], batch)))
  g_med, p_med = statistics.median(g_times), statistics.median(p_times)
  print(f"| model {args.model}, {args.prompts} prompts x G {args.group}, prompt {p}, completion {c} | "
        f"GRPO {g_med * 1e3:.0f} ms, {g_mem / 2**20:.1f} MiB | PPO {p_med * 1e3:.0f} ms, {p_mem / 2**20:.1f} MiB | "
        f"PPO/GRPO time {p_med / g_med:.2f}x, memory {p_mem / g_mem:.2f}x |")


if __name__ == "__main__":
  main()
