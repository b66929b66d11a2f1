"""Exact resume of the RL stage: a SIGKILL, then the same command, writes the same per-step metrics as a run that was
never interrupted, through `python -m experiments.run` in real subprocesses. GRPO with a learned PRM over 2
iterations (the kill lands while a checkpoint is being written: the half-written one is ignored), and PPO (value
model, reference model; the kill lands between checkpoints)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsmath.paths import REPO_ROOT
from tests.rl_configs import flags

TIMING = {"rollout_s", "scoring_s", "update_s", "step_s", "tokens_per_s"}


def _args(name: str, workdir: Path, parent, **overrides) -> list:
  return [sys.executable, "-m", "experiments.run", "--config", str(REPO_ROOT / "configs" / f"{name}.py"),
          "--workdir", str(workdir)] + flags(parent, **overrides)


def _run(args):
  proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout[proc.stdout.index("{"):])


def _rows(workdir: Path) -> list:
  return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
          for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _committed(ckpt: Path) -> list:
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.exists() else []


def _in_flight(ckpt: Path) -> bool:
  return ckpt.exists() and any("tmp" in p.name for p in ckpt.iterdir())


CASES = {
    # 2 iterations x 2 steps, a PRM round before each iteration; killed while saving a checkpoint after step 2 or 3
    "grpo_prm_toy": ({"rl.iterations": 2, "rl.steps": 2, "checkpoint.every": 1}, "during_save"),
    # 4 PPO steps, checkpoints every 2; killed after step 3's metrics (between checkpoints 2 and 4)
    "ppo_toy": ({"rl.steps": 4, "checkpoint.every": 2}, "after_step_3"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sigkill_then_same_command_gives_the_same_metrics(tmp_path, rl_parent_run, name):
  overrides, when = CASES[name]
  straight = _run(_args(name, tmp_path / "straight", rl_parent_run, **overrides))
  reference = _rows(tmp_path / "straight")
  workdir, ckpt = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
  proc = subprocess.Popen(_args(name, workdir, rl_parent_run, **overrides, debug_step_sleep_s=0.3), cwd=REPO_ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  deadline, killed = time.time() + 300, False
  while time.time() < deadline and proc.poll() is None:
    if when == "during_save":
      due = bool(_committed(ckpt)) and _committed(ckpt)[-1] >= 2 and _in_flight(ckpt)
    else:
      metrics = workdir / "metrics.jsonl"
      due = metrics.exists() and any(json.loads(line).get("step") == 3 for line in metrics.read_text().splitlines())
    if due:
      os.kill(proc.pid, signal.SIGKILL)
      killed = True
      break
    time.sleep(0.002)
  proc.wait()
  assert killed, f"the run ended before the kill point: {proc.stderr.read()[-3000:]}"
  last_good = _committed(ckpt)[-1]
  assert 0 < last_good < straight["steps"]
  resumed = _run(_args(name, workdir, rl_parent_run, **overrides))
  assert resumed["origin"] == f"resumed from step {last_good}", resumed["origin"]
  assert resumed["status"] == "completed" and not _in_flight(ckpt)
  assert _rows(workdir) == reference  # every row, every float: rollouts, rewards, reward-model rounds, losses
