"""Prints the exact parameter count and the per-device memory of one compiled train step on a simulated mesh.

  python -m experiments.plan --config configs/plan_7b.py [--config.model.num_layers=2] [--config.mesh.shape='(1,32,1)']

Nothing is allocated: parameters are counted with jax.eval_shape and the step is compiled ahead of time for
abstract shapes on as many simulated CPU devices as config.mesh.shape needs.
"""
import time

from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/plan_7b.py", "A configs/plan_*.py file.")


def main(argv):
  del argv
  config = _CONFIG.value
  import jax  # noqa: E402  (the module may be imported already; the backend must not have started yet)

  from dsmath.model import ModelConfig, abstract_params, count_params
  from dsmath.train.plan import num_devices, plan_from_config

  n = num_devices(config.mesh.shape)
  # Simulated devices: must be set before the CPU backend starts (equivalent to
  # XLA_FLAGS=--xla_force_host_platform_device_count=n).
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", n)
  if jax.device_count() != n:
    raise RuntimeError(f"wanted {n} simulated devices for mesh {tuple(config.mesh.shape)}, got {jax.device_count()}")
  cfg = ModelConfig.from_dict(config.model)
  print(f"model: {cfg}")
  print(f"parameters (jax.eval_shape): {count_params(abstract_params(cfg)):,}")
  t = time.perf_counter()
  plan = plan_from_config(config)
  print(f"compiled one train step ahead of time on {n} simulated devices in {time.perf_counter() - t:.0f} s")
  print(plan.table())


if __name__ == "__main__":
  app.run(main)
