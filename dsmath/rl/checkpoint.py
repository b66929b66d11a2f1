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

from dsmath.runs import PARAMS
from dsmath.train.checkpoint import HostFilesHandler, check_finite_params

TRAIN, HOST = "train", "host"


class HostStateHandler(HostFilesHandler):
  """state.json and arrays.npz, written by process 0 (every process holds the same host state) and read by all."""

  def save(self, directory: epath.Path, args: "HostSave"):
    if jax.process_index() != 0:
      return
    (directory / "state.json").write_text(json.dumps(args.state, indent=1))
    buf = io.BytesIO()
    np.savez(buf, **args.arrays)
    (directory / "arrays.npz").write_bytes(buf.getvalue())

  def restore(self, directory: epath.Path, args: Optional["HostRestore"] = None) -> dict:
    state = json.loads((directory / "state.json").read_text())
    with np.load(io.BytesIO((directory / "arrays.npz").read_bytes()), allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
    return {"state": state, "arrays": arrays}


@ocp.args.register_with_handler(HostStateHandler, for_save=True)
@dataclasses.dataclass
class HostSave(ocp.args.CheckpointArgs):
  state: dict
  arrays: dict


@ocp.args.register_with_handler(HostStateHandler, for_restore=True)
@dataclasses.dataclass
class HostRestore(ocp.args.CheckpointArgs):
  pass


def _split(device_state: dict) -> tuple[dict, dict]:
  policy = dict(device_state["policy"])
  params = policy.pop("params")
  return params, {**{k: v for k, v in device_state.items() if k != "policy"}, "policy": policy}


def _join(params: dict, train: dict) -> dict:
  return {**{k: v for k, v in train.items() if k != "policy"}, "policy": {**train["policy"], "params": params}}


class RLCheckpointer:
  """A run's RL checkpoints: save (async, keep the last N), latest step, restore host state then device state."""

  def __init__(self, directory, *, keep: int = 2, async_save: bool = True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=(PARAMS, TRAIN, HOST),
                                         item_handlers={PARAMS: ocp.StandardCheckpointHandler(),
                                                        TRAIN: ocp.StandardCheckpointHandler(),
                                                        HOST: HostStateHandler()})

  def save(self, step: int, device_state: dict, host_state: dict, arrays: dict) -> None:
    params, train = _split(device_state)
    check_finite_params(step, params)
    self.manager.save(step, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardSave(params), TRAIN: ocp.args.StandardSave(train),
        HOST: HostSave(host_state, {k: np.asarray(v) for k, v in arrays.items()})}), force=True)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def restore_host(self, step: int) -> tuple[dict, dict]:
    out = self.manager.restore(step, args=ocp.args.Composite(**{HOST: HostRestore()}))
    return out[HOST]["state"], out[HOST]["arrays"]

  def restore(self, step: int, abstract_device_state: dict) -> dict:
    """The device state of `step`; abstract_device_state's ShapeDtypeStructs carry the target shardings."""
    params, train = _split(abstract_device_state)
    out = self.manager.restore(step, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardRestore(params), TRAIN: ocp.args.StandardRestore(train)}))
    return _join(out[PARAMS], out[TRAIN])

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
