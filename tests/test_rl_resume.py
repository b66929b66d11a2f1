"""Exact resume of the RL stage: a SIGKILL, then the same command, writes the same per-step metrics as a run that was
never interrupted, through `python -m experiments.run` in real subprocesses. GRPO with a learned PRM over 2
iterations, killed halfway through its second training round (the round is redone from the last checkpoint) and its
resume killed while a checkpoint is being written (the half-written one is ignored), and PPO (value model, reference
model; the kill lands between checkpoints). Each kill lands at a named hold point (dsmath.holds:
the process is held there until the test kills it), never by racing the run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsmath.holds import hold_env, wait_held
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
    # case: (config, overrides, the kills in turn: ((hold phase, step) where the kill lands (dsmath.holds), the
    # checkpoint the next command resumes from)); each command after the first is the resume of the one before
    # 2 iterations x 2 steps, a PRM round before each iteration. First killed halfway through the reward model's
    # second round (the second iteration's start, after step 2's rollouts and update, before checkpoint 2): the
    # resume redoes step 2 and the whole round; that resume killed while the checkpoint of step 3 is being written
    # (every item written, nothing committed): the half-written one is ignored. One run for both kills.
    "grpo_prm_toy": ("grpo_prm_toy", {"rl.iterations": 2, "rl.steps": 2, "checkpoint.every": 1},
                     [(("reward_model_round", 1), 1), (("checkpoint_commit", 3), 2)]),
    # 4 PPO steps, checkpoints every 2; killed just after step 3's metrics row (between checkpoints 2 and 4)
    "ppo_toy": ("ppo_toy", {"rl.steps": 4, "checkpoint.every": 2}, [(("metrics_row", 3), 2)]),
}


def _settled(ckpt: Path, step: int, proc, timeout_s: float = 120.0) -> bool:
  """Whether checkpoint `step` is committed and no other save is in flight, waiting for the background commit of a
  save the held process had already started (it finishes on its own; the process itself is held)."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline and proc.poll() is None:
    if _committed(ckpt)[-1:] == [step] and not _in_flight(ckpt):
      return True
    time.sleep(0.05)
  return False


@pytest.mark.parametrize("case", sorted(CASES))
def test_sigkill_then_same_command_gives_the_same_metrics(tmp_path, rl_parent_run, case):
  name, overrides, kills = CASES[case]
  straight = tmp_path / "straight"
  summary = _run(_args(name, straight, rl_parent_run, **overrides))
  workdir, ckpt, held = tmp_path / "killed", tmp_path / "killed" / "checkpoints", tmp_path / "held.json"
  for (phase, step), last_good in kills:
    held.unlink(missing_ok=True)
    proc = subprocess.Popen(_args(name, workdir, rl_parent_run, **overrides), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", **hold_env(phase, step, held)})
    try:
      assert wait_held(proc, held, timeout_s=300)["step"] == step
      if phase == "checkpoint_commit":
        assert _committed(ckpt)[-1] == last_good and _in_flight(ckpt)  # the save of `step` is in flight right now
      else:
        assert _settled(ckpt, last_good, proc)
    finally:
      proc.kill()
      proc.wait()
    assert proc.returncode == -signal.SIGKILL, (phase, step)
    assert _committed(ckpt)[-1] == last_good and 0 < last_good < summary["steps"], (phase, step)
  resumed = _run(_args(name, workdir, rl_parent_run, **overrides))
  assert resumed["origin"] == f"resumed from step {kills[-1][1]}", resumed["origin"]
  assert resumed["status"] == "completed" and not _in_flight(ckpt)
  assert _rows(workdir) == _rows(straight)  # every row, every float: rollouts, rewards, reward-model rounds, losses
