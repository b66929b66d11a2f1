"""Joining a multi-process (multi-host) JAX job: one process per host, all running the same program.

config.distributed (dsmath.train.config.DistributedConfig): coordinator_address "" (single process, the default),
"auto" (Cloud TPU pods and SLURM: JAX discovers the coordinator, process count and id), or "host:port" with
num_processes and process_id given explicitly (the localhost test; GPU clusters without a scheduler JAX knows).
"""
import jax


def initialize(dist_cfg) -> None:
  """Calls jax.distributed.initialize when configured (a resolved DistributedConfig); must run before any JAX
  computation."""
  address = dist_cfg.coordinator_address
  if not address or jax.distributed.is_initialized():
    return
  # CPU processes need a collectives backend to talk to each other; TPU/GPU backends ignore this setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=address, num_processes=dist_cfg.num_processes,
                               process_id=dist_cfg.process_id)
