"""Hold points: a process stops at a named phase so that a test can kill it exactly there instead of racing it.

A test starts the process with, in its environment:
  DSMATH_HOLD=<phase>[@<step>]  where to stop: when `phase` is reached (at that step, when one is given)
  DSMATH_HOLD_FILE=<path>       written (atomically: JSON {"phase", "step", "pid"}) once the process is held there
The held process blocks until it is killed, or until <path>.release exists (it then goes on, and passes later hold
points while that file exists), or until DSMATH_HOLD_TIMEOUT_S seconds (default 600) have passed (RuntimeError: the
test never came). Without DSMATH_HOLD a hold point costs one environment lookup and does nothing. `hold_env` and
`wait_held` are the test's side.

Phases (a phase is a `hold_point(name, step)` call where it happens; add one the same way):
  checkpoint_commit  a train or RL checkpoint with every item written but nothing committed: orbax's finalize, before
                     the temporary directory is renamed to <step> (a kill here must leave the previous step the
                     latest); step = the checkpoint's step
  metrics_row        a row of metrics.jsonl written and flushed (train and RL runs); step = the row's step
  reward_model_round a learned reward model's training round half done (its params updated, nothing saved);
                     step = the round's index (round 1 retrains it at the second iteration's start)
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Optional

from dsmath.files import write_text_atomic

HOLD, HOLD_FILE, HOLD_TIMEOUT = "DSMATH_HOLD", "DSMATH_HOLD_FILE", "DSMATH_HOLD_TIMEOUT_S"


def hold_point(phase: str, step: Optional[int] = None) -> None:
  """Blocks here when DSMATH_HOLD names this phase (and this step); see the module docstring."""
  spec = os.environ.get(HOLD)
  if not spec:
    return
  want, _, want_step = spec.partition("@")
  if want != phase or (want_step and (step is None or int(want_step) != step)):
    return
  path = os.environ.get(HOLD_FILE)
  if not path:
    raise RuntimeError(f"{HOLD}={spec} is set but {HOLD_FILE} is not: nothing would tell the test the process is held")
  write_text_atomic(path, json.dumps({"phase": phase, "step": step, "pid": os.getpid()}))
  deadline = time.monotonic() + float(os.environ.get(HOLD_TIMEOUT, "600"))
  while not os.path.exists(path + ".release"):
    if time.monotonic() > deadline:
      raise RuntimeError(f"held at {phase} (step {step}) for {os.environ.get(HOLD_TIMEOUT, '600')} s and neither "
                         f"killed nor released ({path}.release)")
    time.sleep(0.05)


def hold_env(phase: str, step: Optional[int], path) -> dict:
  """The environment entries that hold a process at `phase` (and `step`), announcing it in `path`."""
  return {HOLD: phase if step is None else f"{phase}@{step}", HOLD_FILE: os.fspath(path)}


def wait_held(proc: subprocess.Popen, path, timeout_s: float = 600.0) -> dict:
  """Waits until `proc` is held (its hold file exists) and returns the file's record; raises if `proc` ends first or
  the time runs out (the phase was never reached: the message says so)."""
  deadline = time.monotonic() + timeout_s
  path = os.fspath(path)
  while not os.path.exists(path):
    if proc.poll() is not None:
      raise RuntimeError(f"the process ended (exit {proc.returncode}) before reaching its hold point ({path})")
    if time.monotonic() > deadline:
      raise TimeoutError(f"the process did not reach its hold point within {timeout_s} s ({path})")
    time.sleep(0.05)
  with open(path) as f:
    return json.loads(f.read())
