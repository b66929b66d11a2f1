"""Prints the exact parameter count and the per-device memory of compiled steps on simulated meshes.

  python -m experiments.plan --config configs/plan_7b.py [--config.model.num_layers=2] [--config.mesh.shape='(1,32,1)']
  python -m experiments.plan --config configs/grpo_7b.py [--meshes='1,8,1 1,16,1 1,32,1']

A train config (job pretrain/sft, configs/plan_*.py): one train step on config.mesh.shape. An RL config (job "rl"):
the RL stage's rollout, scoring and policy update (dsmath.rl.plan) on config.mesh.shape and on each of --meshes,
with a table and, per accelerator, the smallest of those meshes the run fits.

Nothing is allocated: parameters are counted with jax.eval_shape and the programs are compiled ahead of time for
abstract shapes on as many simulated CPU devices as the largest mesh needs.
"""
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/plan_7b.py", "A configs/plan_*.py or RL config file.")
_MESHES = flags.DEFINE_string("meshes", "1,8,1 1,16,1 1,32,1 1,64,1",
                              "RL configs: further (data,fsdp,tensor) meshes to plan, space separated.")


def _simulate(n: int):
  import jax
  # Simulated devices: must be set before the CPU backend starts (equivalent to
  # XLA_FLAGS=--xla_force_host_platform_device_count=n).
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", n)
  if jax.device_count() != n:
    raise RuntimeError(f"wanted {n} simulated devices, got {jax.device_count()}")
  return jax


def plan_rl(config):
  from dsmath.rl.methods import resolve_rl_config
  run = resolve_rl_config(config)  # checks every key before anything is compiled
  shapes = [tuple(run.config.mesh.shape)] + [tuple(int(x) for x in m.split(",")) for m in _MESHES.value.split()]
  shapes = list(dict.fromkeys(shapes))
  if any(s < 1 for shape in shapes for s in shape):
    raise app.UsageError(f"every mesh axis must be given for a plan (no -1): {shapes}")
  jax = _simulate(max(int(a * b * c) for a, b, c in shapes))
  from dsmath.model import abstract_params, count_params
  from dsmath.model import sharding
  from dsmath.rl import plan as rl_plan
  cfg = run.config
  print(f"model: {cfg.model}")
  print(f"parameters (jax.eval_shape): {count_params(abstract_params(cfg.model)):,}")
  print(f"RL: {cfg.rl.method} (reward {run.reward}, models {run.as_dict()['models']}), {cfg.rollout.prompts_per_step} "
        f"questions x G {run.samples_per_question}, {cfg.task.prompt_budget} + {cfg.rollout.max_new_tokens} tokens, "
        f"update in {cfg.rl.grad_accum_steps} micro-batches")
  plans = []
  for shape in shapes:
    n = shape[0] * shape[1] * shape[2]
    t = time.perf_counter()
    plans.append(rl_plan.plan_rl(run, cfg.model, sharding.make_mesh(shape, jax.devices()[:n])))
    print(f"mesh {shape}: compiled rollout, scoring and update in {time.perf_counter() - t:.0f} s", flush=True)
  print(rl_plan.table(plans))
  for p in plans:
    print(f"\nmesh {p.mesh_shape}, GiB per device:")
    print(rl_plan.phase_details(p))
  for name, gib in rl_plan.ACCELERATORS.items():
    fitting = [p for p in plans if p.fits(gib)]
    best = min(fitting, key=lambda p: (p.mesh_shape[0] * p.mesh_shape[1] * p.mesh_shape[2])) if fitting else None
    print(f"smallest mesh that fits {name}: {best.mesh_shape if best else 'none of those planned'}")


def main(argv):
  del argv
  if _CONFIG.value.get("job") == "rl":
    return plan_rl(_CONFIG.value)
  from dsmath.train.plan import num_devices, plan_from_config, resolve_plan_config
  cfg = resolve_plan_config(_CONFIG.value)  # checks every key before anything is compiled
  n = num_devices(cfg.mesh.shape)
  _simulate(n)
  from dsmath.model import abstract_params, count_params
  print(f"model: {cfg.model}")
  print(f"parameters (jax.eval_shape): {count_params(abstract_params(cfg.model)):,}")
  t = time.perf_counter()
  plan = plan_from_config(cfg)
  print(f"compiled one train step ahead of time on {n} simulated devices in {time.perf_counter() - t:.0f} s")
  print(plan.table())


if __name__ == "__main__":
  app.run(main)
