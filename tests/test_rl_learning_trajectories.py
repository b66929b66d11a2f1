"""The GRPO learning test (tests/test_rl_loop.py) holds on every trajectory, not on one: 3 SFT parents x 4 RL seeds,
each in a fresh interpreter on 2 cores, on one core (taskset -c 0) and with XLA limited to AVX2 (an emulation of a CPU
without AVX-512). Float rounding differs between these, so each is its own set of trajectories; every one must gain
more than the default test's +0.1. Slow (about 5 minutes): the default run covers the same code with 3 RL seeds."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from dsmath.paths import REPO_ROOT

_SCRIPT = r"""
import json, pathlib, sys, tempfile
from dsmath import rl
from tests.rl_configs import grpo_learning_config, parent_config, rollout_accuracy_gain
out = {}
for parent_seed in (0, 1, 2):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    rl.run(parent_config(parent_seed), root / "parent")
    for seed in (0, 1, 2, 3):
      rl.run(grpo_learning_config(root / "parent", seed), root / str(seed))
      first, last, _ = rollout_accuracy_gain(root / str(seed))
      out[f"{parent_seed}/{seed}"] = [first, last]
print("RESULT " + json.dumps(out))
"""

MACHINES = {"two_cores": ([], {}), "one_core": (["taskset", "-c", "0"], {}),
            "avx2": ([], {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"})}


@pytest.mark.slow
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_grpo_learning_test_passes_on_every_trajectory(machine):
  prefix, env = MACHINES[machine]
  if prefix and shutil.which(prefix[0]) is None:
    pytest.skip(f"{prefix[0]} is not installed")
  proc = subprocess.run(prefix + [sys.executable, "-c", _SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=1800, env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT), **env})
  assert proc.returncode == 0, proc.stderr[-4000:]
  res = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
  gains = {k: last - first for k, (first, last) in res.items()}
  print(machine, {k: round(g, 3) for k, g in gains.items()})
  assert len(gains) == 12
  assert all(0.05 < first < 0.95 for first, _ in res.values()), res
  assert min(gains.values()) > 0.1, gains
