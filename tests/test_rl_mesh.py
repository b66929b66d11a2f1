"""Scale on this machine: a GRPO step of the public rl_step on 8 simulated CPU devices, on meshes (8,1,1), (1,8,1)
and (2,2,2), equals the single-device step (rollouts, losses, params); 2 processes x 4 devices via jax.distributed
equal 1 process x 8 devices (the (2,2,2) run of the first test). Subprocesses: XLA_FLAGS must be set before jax is
imported."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HELPER = Path(__file__).parent / "helpers" / "rl_step_mesh.py"


def _results(proc) -> list:
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-4000:]
  return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _same(a: dict, b: dict, rtol: float):
  for sa, sb in zip(a["steps"], b["steps"]):
    for k in ("reward_mean", "accuracy", "completion_len_mean"):  # the same samples: identical rollout statistics
      assert sa[k] == sb[k], (a["mesh"], b["mesh"], k, sa, sb)
    for k in ("loss", "grad_norm", "kl_ref", "entropy"):
      np.testing.assert_allclose(sa[k], sb[k], rtol=rtol, atol=1e-6, err_msg=f"{a['mesh']} vs {b['mesh']}: {k}")
  np.testing.assert_allclose(a["param_first"], b["param_first"], rtol=rtol, atol=1e-6)
  np.testing.assert_allclose(a["param_sum"], b["param_sum"], rtol=rtol)


@pytest.fixture(scope="module")
def meshes(rl_parent_run) -> dict:
  """The helper's GRPO steps on meshes (1,1,1), (8,1,1), (1,8,1) and (2,2,2), one process of 8 devices: results by
  mesh. Both tests read it (the two-process run is checked against its (2,2,2) result: one process fewer)."""
  proc = subprocess.Popen([sys.executable, str(HELPER), str(rl_parent_run), "meshes", "1,1,1", "8,1,1", "1,8,1",
                           "2,2,2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  return {tuple(r["mesh"]): r for r in _results(proc)}


def test_grpo_step_on_meshes_equals_single_device(meshes):
  single, *sharded = meshes.values()
  assert [single["mesh"]] + [r["mesh"] for r in sharded] == [[1, 1, 1], [8, 1, 1], [1, 8, 1], [2, 2, 2]]
  assert single["steps"][0]["loss"] != 0.0 or single["steps"][1]["loss"] != 0.0 or single["steps"][0]["grad_norm"] > 0
  for other in sharded:
    _same(single, other, rtol=1e-4)


def test_two_processes_equal_one_process(rl_parent_run, meshes):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
  procs = [subprocess.Popen([sys.executable, str(HELPER), str(rl_parent_run), "process", str(i), "2", port],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  multi = [_results(p)[0] for p in procs]
  assert multi[0] == multi[1]  # every process sees the same global step
  assert multi[0]["mesh"] == [2, 2, 2]
  _same(meshes[(2, 2, 2)], multi[0], rtol=1e-5)  # one process of 8 devices, the same mesh
