"""Orbax checkpoints of an RL run: everything the run needs to resume exactly.

Layout (<run>/checkpoints/<step>/, the same directory `load_run` / `init_from` read):
  params/   the policy params (StandardSave): what later stages load
  train/    the rest of the device state: the policy's optimizer state, step, rng and skip count, the reference
            params (when the method keeps a reference model), the value model's and the reward model's train states,
            the rollout key (sharded arrays, restored to the run's shardings)
  host/     state.json: the question-stream position, iteration, step, metric rows written, reward-model rounds;
            arrays.npz: the reward model's replay data and the offline (RFT / DPO) dataset (host arrays)
Saves are asynchronous after the device -> host copy and atomic (orbax renames a finished temporary directory), so a
kill during a save leaves the previous checkpoint the latest. Non-finite policy params are never saved.
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from dsmath.train.checkpoint import Checkpointer, HostFilesHandler, HostItem

HOST = "host"


class HostStateHandler(HostFilesHandler):
  """state.json and arrays.npz, written by process 0 (every process holds the same host state) and read by all."""

  def save(self, directory: epath.Path, args: "HostSave"):
    if jax.process_index() != 0:
      return
    (directory / "state.json").write_text(json.dumps(args.state, indent=1))
    buf = io.BytesIO()
    np.savez(buf, **args.arrays)
    (directory / "arrays.npz").write_bytes(buf.getvalue())

  def restore(self, directory: epath.Path, args: Optional["HostRestore"] = None) -> tuple[dict, dict]:
    state = json.loads((directory / "state.json").read_text())
    with np.load(io.BytesIO((directory / "arrays.npz").read_bytes()), allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
    return state, arrays


@ocp.args.register_with_handler(HostStateHandler, for_save=True)
@dataclasses.dataclass
class HostSave(ocp.args.CheckpointArgs):
  state: dict
  arrays: dict

  def __post_init__(self):  # host copies now, when the save starts (the writes may run later)
    self.arrays = {k: np.asarray(v) for k, v in self.arrays.items()}


@ocp.args.register_with_handler(HostStateHandler, for_restore=True)
@dataclasses.dataclass
class HostRestore(ocp.args.CheckpointArgs):
  pass


HOST_ITEM = HostItem(HOST, HostStateHandler, HostSave, HostRestore)


def rl_checkpointer(directory, *, keep: int = 2, async_save: bool = True) -> Checkpointer:
  """A run's RL checkpoints: the shared Checkpointer with host/ as its host item and the policy's params (at
  state["policy"]["params"]) in params/. `restore_host` (state, arrays) comes first, then `restore` (device state)."""
  return Checkpointer(directory, keep=keep, async_save=async_save, host=HOST_ITEM, params_at=("policy", "params"))
