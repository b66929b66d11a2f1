"""experiments.plan on a reduced shape (2 layers of 7B width, 4 simulated devices): exact count and memory lines."""
import os
import re
import subprocess
import sys

from dsmath.model import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_reduced_7b():
  cmd = [sys.executable, "-m", "experiments.plan", "--config", os.path.join(ROOT, "configs/plan_7b.py"),
         "--config.model.num_layers=2", "--config.mesh.shape=(1,4,1)", "--config.plan.seq_len=256"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = proc.stdout
  n = ModelConfig.preset("7b", num_layers=2).num_params()
  assert n == 2 * 102400 * 4096 + 2 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) + 4096
  assert f"parameters (jax.eval_shape): {n:,}" in out
  assert "on 4 simulated devices" in out and "| mesh (data, fsdp, tensor) | (1, 4, 1) |" in out
  assert "| global batch x seq | 4 x 256 |" in out
  gib = {k: float(v.replace(",", "")) for k, v in re.findall(r"\| ([^|]+?) \| ([\d.,]+) GiB \|", out)}
  for key in ("argument size / device", "output size / device", "temp size / device", "generated code"):
    assert key in gib, out
  # fp32 params sharded 4 ways over fsdp, AdamW's two moments twice that.
  assert abs(gib["params / device"] - n * 4 / 4 / 2**30) < 0.01
  assert abs(gib["optimizer state / device"] - 2 * gib["params / device"]) < 0.01
  assert gib["argument size / device"] >= gib["params / device"] + gib["optimizer state / device"] - 0.01
  assert gib["temp size / device"] > 0
