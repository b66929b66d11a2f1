"""GRPO steps of the public rl_step on simulated meshes, for tests/test_rl_mesh.py.

  python tests/helpers/rl_step_mesh.py PARENT_RUN meshes MESH [MESH ...]        one process, 8 CPU devices: each MESH
                                                                                (e.g. 2,2,2 or 1,1,1) in turn
  python tests/helpers/rl_step_mesh.py PARENT_RUN process ID NUM_PROCESSES PORT  one of NUM_PROCESSES processes of a
                                                                                (2, 2, 2) mesh over 8 devices in all
Prints one JSON line per mesh: per-step losses and rollout metrics, and a checksum of the final params.
"""
import json
import os
import sys

parent, mode = sys.argv[1], sys.argv[2]
num_processes = int(sys.argv[4]) if mode == "process" else 1
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // num_processes}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dsmath import model, rl  # noqa: E402
from dsmath.model import sharding  # noqa: E402
from dsmath.runs import load_run  # noqa: E402
from dsmath.train import distributed  # noqa: E402
from dsmath.train.config import DistributedConfig  # noqa: E402
from tests.rl_configs import config  # noqa: E402

if num_processes > 1:
  distributed.initialize(DistributedConfig(coordinator_address=f"127.0.0.1:{sys.argv[5]}",
                                           num_processes=num_processes, process_id=int(sys.argv[3])))
assert jax.device_count() == 8, jax.devices()
run = rl.resolve_rl_config(config("grpo_toy", parent, **{"rollout.prompts_per_step": 4, "rollout.group_size": 4,
                                                         "optimizer.peak_lr": 1e-3}))
p = load_run(parent)
task = rl.build_task(run.config.task, p.load_tokenizer(), 0)
meshes = [tuple(int(x) for x in m.split(",")) for m in sys.argv[3:]] if mode == "meshes" else [(2, 2, 2)]
for shape in meshes:
  devices = jax.devices()[:int(np.prod(shape))]
  mesh = sharding.make_mesh(shape, devices)
  step = rl.RLStep(run, p.model, task, mesh=mesh)
  params = p.load_params(jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                      model.abstract_params(p.model), step.policy.state_shardings["params"]))
  state = step.init_state(params, seed=0)
  out = {"mesh": shape, "steps": []}
  for s in range(2):
    state, m = step(state, rl.stream_indices(0, len(task.train), 4 * s, 4))
    out["steps"].append({k: m[k] for k in ("loss", "grad_norm", "kl_ref", "reward_mean", "accuracy",
                                           "completion_len_mean", "entropy")})
  leaves = [sharding.host_array(x) for x in jax.tree.leaves(state["policy"]["params"])]
  out["param_sum"] = float(sum(np.abs(x).astype(np.float64).sum() for x in leaves))
  out["param_first"] = [float(x.reshape(-1)[0]) for x in leaves]
  step.close()
  print(json.dumps(out), flush=True)
