"""dsmath.holds: a hold point blocks only at its phase and step, says so in its file, and goes on once released (the
kill tests in test_train_run.py and test_rl_resume.py hold real runs at real phases)."""
import json
import subprocess
import sys
import threading
import time

import pytest

from dsmath.holds import hold_env, hold_point, wait_held


def test_hold_blocks_only_at_its_phase_and_step_until_released(tmp_path, monkeypatch):
  held = tmp_path / "held.json"
  for k, v in hold_env("checkpoint_commit", 3, held).items():
    monkeypatch.setenv(k, v)
  hold_point("metrics_row", 3)  # another phase
  hold_point("checkpoint_commit", 2)  # another step
  hold_point("checkpoint_commit", None)
  assert not held.exists()
  done = threading.Event()
  t = threading.Thread(target=lambda: (hold_point("checkpoint_commit", 3), done.set()))
  t.start()
  deadline = time.monotonic() + 30
  while not held.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
  assert json.loads(held.read_text())["step"] == 3
  assert not done.wait(0.3)  # held
  (tmp_path / "held.json.release").touch()
  t.join(30)
  assert done.is_set()
  hold_point("checkpoint_commit", 3)  # released: later hold points pass


def test_hold_without_a_file_and_a_process_that_never_arrives(tmp_path, monkeypatch):
  monkeypatch.setenv("DSMATH_HOLD", "metrics_row")
  monkeypatch.delenv("DSMATH_HOLD_FILE", raising=False)
  with pytest.raises(RuntimeError, match="DSMATH_HOLD_FILE is not"):
    hold_point("metrics_row", 1)
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  with pytest.raises(RuntimeError, match="ended .* before reaching its hold point"):
    wait_held(proc, tmp_path / "never.json")
