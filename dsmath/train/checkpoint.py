"""Orbax checkpoints of a run: params, the rest of the train state, and each process's data-iterator state.

Layout (any path orbax/etils supports, gs:// included):
  <dir>/<step>/params/        the model params (StandardSave): what init_from and other stages load
  <dir>/<step>/train/         {opt_state, step, rng, num_skipped}
  <dir>/<step>/data/          process_<i>-of-<n>.json: the Grain iterator's get_state() of each process
`Checkpointer` writes this layout for the train loop and, with another item of host files in place of data/ and the
params found elsewhere in the state, the RL's (dsmath.rl.checkpoint: params/, train/, host/).
Saves are asynchronous (the device->host copy happens before `save` returns, the writes run in the background) and
atomic: orbax writes into a temporary directory and renames it to <step> when every item is written, so a kill during
a save leaves only a tmp directory that is never restored, and the previous step stays the latest. Params with a NaN
or inf are never saved (FloatingPointError before anything is written): a rerun never resumes from them.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from dsmath.holds import hold_point
from dsmath.runs import PARAMS, read_params

TRAIN, DATA = "train", "data"


class HostFilesHandler(ocp.CheckpointHandler):
  """A checkpoint item of plain host files (subclasses write and read them): no array metadata, nothing to finalize
  but the "checkpoint_commit" hold point (dsmath.holds), where every item is written and nothing is committed yet."""

  def metadata(self, directory: epath.Path):
    return None

  def structure(self, directory: epath.Path):
    return None

  def finalize(self, directory: epath.Path):
    # directory: <checkpoints>/<step>[.orbax-checkpoint-tmp...]/<item>[...], the step directory not yet renamed
    step = re.match(r"\d+", directory.parent.name)
    hold_point("checkpoint_commit", int(step.group()) if step else None)

  def close(self):
    pass


class DataStateHandler(HostFilesHandler):
  """Each process writes its iterator state (a JSON-able dict, e.g. grain's get_state()) to its own file."""

  def save(self, directory: epath.Path, args: "DataStateSave"):
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    (directory / name).write_text(json.dumps(args.state, indent=1))

  def restore(self, directory: epath.Path, args: Optional["DataStateRestore"] = None) -> dict:
    path = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if not path.exists():
      raise FileNotFoundError(f"no data-iterator state for this process in the checkpoint: {path} (was it written by "
                              f"a run with a different number of processes?)")
    return json.loads(path.read_text())


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: dict


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


@dataclasses.dataclass(frozen=True)
class HostItem:
  """The checkpoint item of host files beside params/ and train/: its directory in each step, its handler, and the
  args that save it (built from what `Checkpointer.save` gets after the state) and restore it."""
  name: str
  handler: type[HostFilesHandler]
  save_args: type[ocp.args.CheckpointArgs]
  restore_args: type[ocp.args.CheckpointArgs]


DATA_ITEM = HostItem(DATA, DataStateHandler, DataStateSave, DataStateRestore)


def _split(state: dict, path: tuple[str, ...]) -> tuple[Any, dict]:
  """(the params at `path` in state, the rest of state without them)."""
  head, tail = path[0], path[1:]
  rest = {k: v for k, v in state.items() if k != head}
  if not tail:
    return state[head], rest
  params, rest[head] = _split(state[head], tail)
  return params, rest


def _join(params, rest: dict, path: tuple[str, ...]) -> dict:
  """The inverse of _split: rest with params put back at `path`."""
  head, tail = path[0], path[1:]
  return {**rest, head: _join(params, rest[head], tail) if tail else params}


# One bool per leaf, reduced where the params live: only len(leaves) bools come to the host, never the params.
_leaf_finite = jax.jit(lambda leaves: jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def check_finite_params(step: int, params) -> None:
  """FloatingPointError naming the step and the first parameter path holding a NaN/inf, if any."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  if not flat:
    return
  paths, leaves = zip(*flat)
  finite = np.asarray(jax.device_get(_leaf_finite(list(leaves))))
  if finite.all():
    return
  bad = [_path_name(p) for p, ok in zip(paths, finite) if not ok]
  raise FloatingPointError(f"refusing to save step {step}: params contain NaN/inf, first at '{bad[0]}' "
                           f"({len(bad)} of {len(leaves)} arrays non-finite); the checkpoint is not written")


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _manager(directory, *, keep: Optional[int], async_save: bool, read_only: bool = False,
             host: HostItem = DATA_ITEM) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                         create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(epath.Path(directory), options=options, item_names=(PARAMS, TRAIN, host.name),
                               item_handlers={PARAMS: ocp.StandardCheckpointHandler(),
                                              TRAIN: ocp.StandardCheckpointHandler(), host.name: host.handler()})


class Checkpointer:
  """A run's checkpoint directory: save (async, keep the last N), latest step, restore the host item, restore the
  device state. `host` is the item of host files (the train loop's data/ by default, the RL's host/), `params_at`
  the path of the params in the state: params/ holds them, train/ the rest of the state."""

  def __init__(self, directory, *, keep: int = 3, async_save: bool = True, host: HostItem = DATA_ITEM,
               params_at: tuple[str, ...] = ("params",)):
    self.directory, self.host, self.params_at = epath.Path(directory), host, params_at
    self.manager = _manager(self.directory, keep=keep, async_save=async_save, host=host)

  def save(self, step: int, state: dict, *host) -> bool:
    """Starts saving `state` and the host item (`host`: the fields of its save args, e.g. the data-iterator state) as
    `step`; returns once the arrays are copied off device.

    Non-finite params raise FloatingPointError before the save starts (the previous checkpoint stays the latest)."""
    params, train = _split(state, self.params_at)
    check_finite_params(step, params)
    return self.manager.save(step, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardSave(params), TRAIN: ocp.args.StandardSave(train),
        self.host.name: self.host.save_args(*host)}), force=True)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def restore_host(self, step: int):
    """What the host item's handler restores of `step` (the data-iterator state of this process, ...)."""
    name = self.host.name
    return self.manager.restore(step, args=ocp.args.Composite(**{name: self.host.restore_args()}))[name]

  def restore(self, step: int, abstract_state: dict) -> dict:
    """The device state of `step`; abstract_state's ShapeDtypeStructs carry the target shardings."""
    params, train = _split(abstract_state, self.params_at)
    out = self.manager.restore(step, args=ocp.args.Composite(**{
        PARAMS: ocp.args.StandardRestore(params), TRAIN: ocp.args.StandardRestore(train)}))
    return _join(out[PARAMS], out[TRAIN], self.params_at)

  def wait(self):
    """Blocks until pending asynchronous saves are committed."""
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def resolve_checkpoint(path) -> tuple[epath.Path, int]:
  """A run directory (with checkpoints/), a checkpoint directory or one step directory -> (checkpoint dir, step)."""
  path = epath.Path(path)
  if (path / PARAMS).exists() and path.name.isdigit():
    return path.parent, int(path.name)
  for directory in (path / "checkpoints", path):
    if directory.exists():
      manager = _manager(directory, keep=None, async_save=False, read_only=True)
      step = manager.latest_step()
      manager.close()
      if step is not None:
        return directory, step
  raise FileNotFoundError(f"no checkpoint found at {path} (looked for {path}/checkpoints/<step>, {path}/<step> and a "
                          f"step directory holding '{PARAMS}/')")


def save_params(run_dir, step: int, params: dict) -> epath.Path:
  """Writes a params-only checkpoint <run_dir>/checkpoints/<step>/params (atomic, synchronous), the form
  `load_params` and `init_from` read: how stages that are not the train loop (RL, HF import) hand a model on.
  Non-finite params raise FloatingPointError and write nothing."""
  check_finite_params(step, params)
  manager = _manager(epath.Path(run_dir) / "checkpoints", keep=None, async_save=False)
  manager.save(step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardSave(params)}), force=True)
  manager.wait_until_finished()
  manager.close()
  return epath.Path(run_dir) / "checkpoints" / str(step)


def load_params(path, abstract_params: Any) -> dict:
  """The params of the latest checkpoint under `path` (see resolve_checkpoint), restored to abstract_params'
  shapes, dtypes and shardings (ShapeDtypeStructs)."""
  directory, step = resolve_checkpoint(path)
  return read_params(directory / str(step), abstract_params)
