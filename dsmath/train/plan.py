"""The 7B on paper: exact parameter count and per-device memory of one compiled training step, allocating nothing.

Everything is abstract (jax.ShapeDtypeStruct): the train state and the batch are shapes with shardings, the step is
lowered and compiled ahead of time for the mesh, and XLA's `memory_analysis()` of the compiled SPMD program gives
per-device bytes. The step is the real one the train loop runs (`dsmath.train.make_train_step`: next-token loss,
clipped AdamW, donated state), so the plan measures what training will use.

On CPU the mesh is simulated (`jax_num_cpu_devices`); XLA's CPU backend fuses and schedules differently from TPU/GPU
backends, so read the numbers as an estimate of the accelerator footprint, not a guarantee.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dsmath import config as config_lib
from dsmath.model.api import abstract_params, count_params
from dsmath.model.config import ModelConfig
from dsmath.model import sharding as msharding
from dsmath.train.config import MeshConfig, OptimizerConfig, ShardingConfig
from dsmath.train.loss import next_token_loss
from dsmath.train.optimizer import make_optimizer
from dsmath.train.step import abstract_state, make_train_step

BATCH_KEYS = {"inputs": jnp.int32, "targets": jnp.int32, "segment_ids": jnp.int32, "positions": jnp.int32,
              "loss_mask": jnp.float32}


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-device memory (bytes) of one compiled train step, plus what it was compiled for."""
  num_params: int
  mesh_shape: tuple
  global_batch: int
  seq_len: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  generated_code_bytes: int
  param_bytes_per_device: int
  opt_state_bytes_per_device: int

  @property
  def peak_bytes(self) -> int:
    """Live at once: inputs + outputs not aliased to (donated) inputs + XLA scratch."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  def table(self) -> str:
    gib = lambda b: f"{b / 2**30:,.2f} GiB"  # noqa: E731
    rows = [("parameters", f"{self.num_params:,}"),
            ("mesh (data, fsdp, tensor)", str(self.mesh_shape)),
            ("global batch x seq", f"{self.global_batch} x {self.seq_len}"),
            ("params / device", gib(self.param_bytes_per_device)),
            ("optimizer state / device", gib(self.opt_state_bytes_per_device)),
            ("argument size / device", gib(self.argument_bytes)),
            ("output size / device", gib(self.output_bytes)),
            ("aliased (donated) / device", gib(self.alias_bytes)),
            ("temp size / device", gib(self.temp_bytes)),
            ("generated code", gib(self.generated_code_bytes)),
            ("peak estimate / device (arg + out - alias + temp)", gib(self.peak_bytes))]
    return "\n".join(["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _per_device_bytes(tree, shardings) -> int:
  total = 0
  for x, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    total += int(np.prod(sh.shard_shape(x.shape))) * jnp.dtype(x.dtype).itemsize
  return total


def abstract_batch(global_batch: int, seq_len: int, batch_sharding) -> dict:
  return {k: jax.ShapeDtypeStruct((global_batch, seq_len), dt, sharding=batch_sharding) for k, dt in BATCH_KEYS.items()}


def plan_train_step(cfg: ModelConfig, mesh_shape: Sequence[int], optimizer: optax.GradientTransformation,
                    batch_per_data_shard: int, seq_len: int, rules=msharding.DEFAULT_RULES,
                    grad_accum_steps: int = 1, devices: Optional[Sequence] = None) -> Plan:
  """Compiles one train step ahead of time for abstract shapes and reports per-device memory.

  batch_per_data_shard: rows per data-parallel shard (the data and fsdp axes split the batch; tensor does not), so
  the global batch is batch_per_data_shard * data * fsdp.
  """

  mesh = msharding.make_mesh(mesh_shape, devices)
  data_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  global_batch = batch_per_data_shard * data_shards
  step = make_train_step(cfg, optimizer, next_token_loss(cfg), mesh=mesh, rules=rules,
                         grad_accum_steps=grad_accum_steps)
  state = abstract_state(cfg, optimizer)
  state = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), state,
                       step.state_shardings)
  compiled = step.lower(state, abstract_batch(global_batch, seq_len, step.batch_sharding)).compile()
  mem = compiled.memory_analysis()
  return Plan(
      num_params=count_params(abstract_params(cfg)), mesh_shape=tuple(mesh.shape[a] for a in msharding.MESH_AXES),
      global_batch=global_batch, seq_len=seq_len, argument_bytes=mem.argument_size_in_bytes,
      output_bytes=mem.output_size_in_bytes, alias_bytes=mem.alias_size_in_bytes, temp_bytes=mem.temp_size_in_bytes,
      generated_code_bytes=mem.generated_code_size_in_bytes,
      param_bytes_per_device=_per_device_bytes(state["params"], step.state_shardings["params"]),
      opt_state_bytes_per_device=_per_device_bytes(state["opt_state"], step.state_shardings["opt_state"]))


def _paper_7b() -> ModelConfig:
  return ModelConfig.preset("7b", dtype="bfloat16", remat="full")


@dataclasses.dataclass(frozen=True)
class PlanShape:
  """config.plan: what one step is compiled for."""
  batch_per_data_shard: int = 1  # rows per (data x fsdp) shard; global batch = this * data * fsdp
  seq_len: int = 4096
  grad_accum_steps: int = 1
  total_steps: int = 50_000  # only shapes the schedule; no effect on memory


@dataclasses.dataclass(frozen=True)
class PlanStageConfig:
  """The plan entry's schema (configs/plan_*.py start from `default_config()`): the paper's 7B (bf16 compute, full
  remat), every mesh axis given (the plan simulates exactly these devices), the paper's AdamW."""
  job: Literal["plan"] = "plan"
  # Every field spelled out in the ConfigDict, so any can be overridden (--config.model.num_layers=2).
  model: ModelConfig = config_lib.field(default_factory=_paper_7b, resolve=ModelConfig.resolve,
                                        config=dataclasses.asdict(_paper_7b()))
  mesh: MeshConfig = dataclasses.field(default_factory=lambda: MeshConfig(shape=(1, 16, 1)))
  sharding: ShardingConfig = config_lib.sub(ShardingConfig)
  optimizer: OptimizerConfig = config_lib.sub(OptimizerConfig)
  plan: PlanShape = config_lib.sub(PlanShape)


def default_config():
  return config_lib.config_dict(PlanStageConfig)


def resolve_plan_config(config: Any) -> PlanStageConfig:
  if isinstance(config, PlanStageConfig):
    return config
  return config_lib.resolve(PlanStageConfig, config)


def plan_from_config(config: Any) -> Plan:
  """The plan for a configs/plan_*.py config (resolved against PlanStageConfig)."""
  cfg = resolve_plan_config(config)
  optimizer, _ = make_optimizer(cfg.optimizer, total_steps=cfg.plan.total_steps)
  return plan_train_step(cfg.model, cfg.mesh.shape, optimizer, cfg.plan.batch_per_data_shard, cfg.plan.seq_len,
                         cfg.sharding.rules, cfg.plan.grad_accum_steps)


def num_devices(mesh_shape: Sequence[int]) -> int:
  """Devices a fully specified mesh shape needs (a plan simulates exactly these)."""
  if any(s < 1 for s in mesh_shape):
    raise ValueError(f"config.mesh.shape={list(mesh_shape)}: a plan needs every axis size given (no -1)")
  return int(np.prod(mesh_shape))
