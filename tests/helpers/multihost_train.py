"""One process of the multi-host test: a few dsmath train steps on a (2, 2, 2) mesh over all processes' devices.

  python tests/helpers/multihost_train.py PROCESS_ID NUM_PROCESSES PORT   (NUM_PROCESSES=1: one process, 8 devices)
Each process feeds only its own rows of a fixed global batch; prints one JSON line of per-step losses.
"""
import json
import os
import sys

process_id, num_processes, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // num_processes}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dsmath import model  # noqa: E402
from dsmath.model import sharding  # noqa: E402
from dsmath.train import distributed, make_optimizer, make_train_step, new_state, next_token_loss  # noqa: E402
from dsmath.train.config import DistributedConfig, OptimizerConfig  # noqa: E402

if num_processes > 1:
  distributed.initialize(DistributedConfig(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                                           process_id=process_id))
assert jax.process_count() == num_processes and jax.device_count() == 8

cfg = model.ModelConfig.preset("tiny")
optimizer, _ = make_optimizer(OptimizerConfig(), total_steps=10)
step = make_train_step(cfg, optimizer, next_token_loss(cfg), mesh=sharding.make_mesh((2, 2, 2)))
state = new_state(step, cfg, optimizer, seed=0)
rng = np.random.RandomState(0)
rows = 8 // num_processes
losses = []
for i in range(3):
  tokens = rng.randint(0, cfg.vocab_size, (8, 65)).astype(np.int32)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": np.ones((8, 64), np.int32),
           "positions": np.broadcast_to(np.arange(64, dtype=np.int32), (8, 64)).copy(),
           "loss_mask": np.ones((8, 64), np.float32)}
  local = {k: v[process_id * rows:(process_id + 1) * rows] for k, v in batch.items()}
  state, metrics = step(state, step.shard_batch(local))
  losses.append(float(metrics["loss"]))
print(json.dumps({"process": process_id, "losses": losses}), flush=True)
