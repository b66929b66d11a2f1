"""Scale on this machine: a GRPO step of the public rl_step on 8 simulated CPU devices, on meshes (8,1,1), (1,8,1)
and (2,2,2), equals the single-device step (rollouts, losses, params); 2 processes x 4 devices via jax.distributed
equal 1 process x 8 devices. Subprocesses: XLA_FLAGS must be set before jax is imported."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def test_grpo_step_on_meshes_equals_single_device(rl_parent_run):
  proc = subprocess.Popen([sys.executable, str(HELPER), str(rl_parent_run), "meshes", "1,1,1", "8,1,1", "1,8,1",
                           "2,2,2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  single, *sharded = _results(proc)
  assert single["steps"][0]["loss"] != 0.0 or single["steps"][1]["loss"] != 0.0 or single["steps"][0]["grad_norm"] > 0
  for other in sharded:
    _same(single, other, rtol=1e-4)


def test_two_processes_equal_one_process(rl_parent_run):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
  procs = [subprocess.Popen([sys.executable, str(HELPER), str(rl_parent_run), "process", str(i), "2", port],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  multi = [_results(p)[0] for p in procs]
  single = _results(subprocess.Popen([sys.executable, str(HELPER), str(rl_parent_run), "meshes", "2,2,2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))[0]
  assert multi[0] == multi[1]  # every process sees the same global step
  _same(single, multi[0], rtol=1e-5)
