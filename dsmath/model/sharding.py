"""Mesh and logical-axis sharding (MaxText style): rules are plain data carried in the config.

Mesh axes: data (pure data parallel), fsdp (data parallel with sharded params and optimizer state), tensor
(Megatron-style intra-layer model parallel). A logical name maps to one mesh axis, a tuple of them, or None.
"""
import contextlib
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dsmath.model.api import param_logical_axes
from dsmath.model.config import ModelConfig

MESH_AXES = ("data", "fsdp", "tensor")

DEFAULT_RULES = (
    # activations
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),
)


def rules_from_config(rules) -> tuple:
  """Config rules (a list of [name, axis-or-list-or-None]) -> flax's tuple form."""
  out = []
  for name, axes in rules:
    out.append((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes))
  return tuple(out)


def make_mesh(shape: Sequence[int], devices=None) -> Mesh:
  """A (data, fsdp, tensor) mesh; one entry may be -1 to take the remaining devices."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != 3:
    raise ValueError(f"mesh.shape must have 3 entries for {MESH_AXES}, got {shape}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape may contain at most one -1, got {shape}")
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    shape[shape.index(-1)] = devices.size // known
  if int(np.prod(shape)) != devices.size:
    raise ValueError(f"mesh.shape {shape} needs {int(np.prod(shape))} devices, have {devices.size}")
  # Auto axes: XLA propagates shardings from the logical constraints (explicit-sharding typing is not needed).
  return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices.reshape(-1).tolist())


def logical_to_sharding(logical_specs, mesh: Mesh, rules) -> object:
  """A pytree of logical PartitionSpecs -> NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules_from_config(rules))


def param_shardings(cfg: ModelConfig, mesh: Mesh, rules=DEFAULT_RULES):
  """NamedSharding for every parameter."""
  return logical_to_sharding(param_logical_axes(cfg), mesh, rules)


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES, ndim: int = 2) -> NamedSharding:
  """Sharding for [B, T, ...] inputs: batch over the data axes."""
  spec = nn.logical_to_mesh_axes(("batch",) + (None,) * (ndim - 1), rules_from_config(rules))
  return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules=DEFAULT_RULES):
  """Scope in which the model's logical activation constraints bind to `mesh` (enter while tracing/jitting)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules_from_config(rules)):
    yield


def host_array(x) -> np.ndarray:
  """A (possibly sharded) jax array as one numpy array on this host. With several processes each holds only some
  shards: they are all-gathered first (every process gets the whole array)."""
  if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def global_array(x, sharding: NamedSharding) -> jax.Array:
  """A host array that every process holds whole -> a global jax array with `sharding` (each process places only
  its own shards)."""
  x = np.asarray(x)
  with jax.transfer_guard("allow"):  # a deliberate host -> device copy, whatever guard the caller runs under
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
