"""The RL stage on paper: per-device memory of an RL run (the paper's GRPO or PPO at 7B) on a mesh, compiled ahead
of time, allocating nothing.

Everything is abstract: the RL state (policy params + AdamW state, the frozen reference, the reward model's or the
value model's params and AdamW state) and the batches are ShapeDtypeStructs with the run's shardings, and the very
programs the RL loop runs are lowered and compiled for the mesh (`dsmath.rl.RLStep`): the rollout (one prefill of
each prompt of the step, then the continuous-batching decode, `dsmath.sample.continuous`, over a KV cache of
rollout.max_rows slots refilled as completions finish; on stacked params as on accelerators), the scoring of the rollout by
the reference, the reward model and the value model (micro-batched), and the policy and value updates (micro-batched,
donated state). XLA's `memory_analysis()` gives each program's per-device bytes.

What lives on a device at once: the whole RL state, always (`resident`), plus the largest phase's own extra bytes
(its non-state arguments, outputs that are not donated buffers, and scratch). The peak estimate is resident + the
largest extra; a mesh fits an accelerator when that is below its memory.

On CPU the mesh is simulated (`jax_num_cpu_devices`); XLA's CPU pipeline fuses and schedules differently from TPU/GPU
backends, so the scratch figures are an estimate of the accelerator footprint; the state sizes are exact.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.model import sharding as msharding
from dsmath.rl.methods import RLRun
from dsmath.rl.reward_model import RewardModelTrainer
from dsmath.rl.rollout import rollout_slots
from dsmath.rl.step import RLStep
from dsmath.rl.tasks import Task
from dsmath.sample import continuous, engine
from dsmath.sample.strategies import Temperature

GIB = 2 ** 30
# Accelerator memory per chip (GiB): TPU v5p 95 GiB HBM2e; NVIDIA H100 SXM 80 GB.
ACCELERATORS = types.MappingProxyType({"TPU v5p (95 GiB)": 95.0, "H100 80GB": 80.0 * 1e9 / GIB})


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  state_argument_bytes: int  # of argument_bytes, what is the resident RL state (counted once, in `resident`)

  @property
  def extra_bytes(self) -> int:
    """What the phase adds to the resident state: its other arguments, fresh outputs, scratch. (XLA may drop state
    arrays a program does not read, e.g. a reward model's unused LM head, so arguments can be below the state.)"""
    return max(0, self.argument_bytes - self.state_argument_bytes) + self.output_bytes - self.alias_bytes + \
        self.temp_bytes


@dataclasses.dataclass(frozen=True)
class RLPlan:
  mesh_shape: tuple
  num_params: int
  rows: int  # completions a step (questions x G)
  rollout_slots: int  # KV cache slots of the continuous rollout (`rollout_slots`)
  prefill_prompts: int  # prompts the rollout prefills (the step's questions, padded to the data-parallel size)
  rollout_cache_bytes: int  # per device: the slots' KV cache, rollout_slots x (prompt_len + completion_len)
  prompt_len: int
  completion_len: int
  resident: dict  # component -> bytes per device
  phases: tuple

  @property
  def resident_bytes(self) -> int:
    return sum(self.resident.values())

  @property
  def peak_bytes(self) -> int:
    return self.resident_bytes + max(p.extra_bytes for p in self.phases)

  def fits(self, gib: float) -> bool:
    return self.peak_bytes <= gib * GIB


def _bytes(tree) -> int:
  """Per-device bytes of abstract arrays with shardings."""
  total = 0
  for x in jax.tree.leaves(tree):
    total += int(np.prod(x.sharding.shard_shape(x.shape))) * jnp.dtype(x.dtype).itemsize
  return total


def _phase(name: str, compiled, state_args) -> Phase:
  m = compiled.memory_analysis()
  return Phase(name, m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes, m.temp_size_in_bytes,
               _bytes(state_args))


def planning_task(tokenizer_ids: tuple[int, int], prompt_len: int) -> Task:
  """A stand-in task of the right prompt width: the plan needs shapes, not questions."""
  tok = types.SimpleNamespace(pad_id=tokenizer_ids[0], eos_id=tokenizer_ids[1], bos_id=tokenizer_ids[1],
                              stop_ids=(tokenizer_ids[1],))
  return Task(train=(), test=(), prompt_tokens=np.zeros((1, prompt_len), np.int32),
              prompt_mask=np.zeros((1, prompt_len), np.float32), prompt_len=prompt_len, tokenizer=tok,
              config=None, bad_rows={})


def plan_rl(run: RLRun, model_cfg: model.ModelConfig, mesh, prompt_len: Optional[int] = None) -> RLPlan:
  """Compiles the rollout, scoring and update of `run` for `mesh` on abstract shapes and reports per-device memory."""
  cfg = run.config
  if cfg.rollout.tool_rounds:
    raise ValueError("rollout.tool_rounds: the plan compiles rollouts without tools (a tool round's cache extension "
                     "is not planned); plan with rollout.tool_rounds=0")
  prompt_len = prompt_len or cfg.task.prompt_budget
  rl = RLStep(run, model_cfg, planning_task((0, 1), prompt_len), mesh=mesh, total_updates=cfg.rl.steps)
  try:
    if rl.rollout.batching(cfg.rollout.prompts_per_step, run.samples_per_question) != "continuous":
      raise ValueError(f"the plan compiles the continuous rollout, and rollout.batching={cfg.rollout.batching!r} "
                       f"with rollout.max_rows={cfg.rollout.max_rows} samples this step statically; plan with "
                       "rollout.batching='continuous'")
    state = rl.abstract_state()
    rm = RewardModelTrainer(rl, cfg.rl.iterations) if run.needs_reward_model else None
    if rm is not None:
      state["reward_model"] = rm.abstract_state()
    b, g, c = cfg.rollout.prompts_per_step, run.samples_per_question, cfg.rollout.max_new_tokens
    rows, p = b * g, prompt_len
    batch_sh = rl.policy.batch_sharding
    arr = lambda shape, dtype, sh=batch_sh: jax.ShapeDtypeStruct(shape, dtype, sharding=sh)  # noqa: E731
    scored = {"prompt": arr((rows, p), jnp.int32), "prompt_mask": arr((rows, p), jnp.float32),
              "completion": arr((rows, c), jnp.int32), "mask": arr((rows, c), jnp.float32)}
    phases = []
    # the rollout: each of the step's b prompts prefilled once (padded to the data-parallel size), then the
    # continuous decode of its b * G completions through rollout.max_rows cache slots (accelerator layout: stacked
    # params under the layer scan; cache, bank and slot table over the data axes, KV heads over tensor)
    layout = engine.Layout(rl.mesh, rl.rules)
    groups = continuous.split_groups(b, g, layout.dp, rollout_slots(cfg.rollout.max_rows, rows))
    with rl.scope():
      row_sh = msharding.batch_sharding(rl.mesh, rl.rules, 1)
      rep = msharding.replicated(rl.mesh)
      params = state["policy"]["params"]
      pb = -(-b // layout.dp) * layout.dp
      prefill = engine.prefill.lower(model_cfg, params, arr((pb, p), jnp.int32), arr((pb,), jnp.int32, row_sh),
                                     cache_len=p, num_samples=1, layout=layout.key).compile()
      phases.append(_phase("rollout: prefill", prefill, params))
      cache = jax.eval_shape(lambda: model.init_cache(model_cfg, pb, p))
      cache = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), cache,
                           _cache_shardings(rl, model_cfg, pb, p))
      r = groups.groups * groups.rows
      keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), r))
      decode = continuous.rollout.lower(
          model_cfg, Temperature(cfg.rollout.temperature), c, params, cache,
          arr((pb, model_cfg.vocab_size), jnp.float32), arr((pb,), jnp.int32, row_sh),
          arr((r,), jnp.int32, row_sh), arr((r,), jnp.bool_, row_sh),
          None if groups.own_prompts else arr(groups.bank_prompt.shape, jnp.int32, row_sh),
          arr((r,), jnp.int32, row_sh), jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=row_sh),
          arr((r,), jnp.int32, row_sh), jax.ShapeDtypeStruct((4, 4), jnp.int32, sharding=rep),
          jax.ShapeDtypeStruct((4,), jnp.int32, sharding=rep), jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
          slots=groups.groups * groups.slots, prompts=b, layout=layout.key).compile()
      phases.append(_phase("rollout: decode (KV cache)", decode, params))
      slots = groups.groups * groups.slots
      slot_cache = jax.eval_shape(lambda: model.init_cache(model_cfg, slots, p + c))
      cache_bytes = _bytes(jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), slot_cache,
                                        _cache_shardings(rl, model_cfg, slots, p + c)))
      if run.needs_reference:
        phases.append(_phase("reference log-probs", rl.logprobs.lower(state["ref"], scored).compile(), state["ref"]))
      if rm is not None:
        rm_params = state["reward_model"]["params"]
        phases.append(_phase("reward-model scores", rl.reward_scores.lower(rm_params, scored).compile(), rm_params))
      if rl.value is not None:
        v_params = state["value"]["params"]
        phases.append(_phase("value-model scores", rl.values.lower(v_params, scored).compile(), v_params))
      update = {**scored, "old_logp": arr((rows, c), jnp.float32), "advantages": arr((rows, c), jnp.float32)}
      if run.needs_reference:
        update["ref_logp"] = arr((rows, c), jnp.float32)
      if rl.value is not None:  # GAE's returns and the values they came from (the value loss clips around them)
        update.update(returns=arr((rows, c), jnp.float32), old_values=arr((rows, c), jnp.float32))
    phases.append(_phase("policy update", rl.policy.lower(state["policy"], update).compile(), state["policy"]))
    if rl.value is not None:
      phases.append(_phase("value-model update", rl.value.lower(state["value"], update).compile(), state["value"]))
    resident = {"policy params": _bytes(state["policy"]["params"]),
                "policy AdamW state": _bytes(state["policy"]["opt_state"])}
    if run.needs_reference:
      resident["reference params"] = _bytes(state["ref"])
    if rm is not None:
      resident["reward model params"] = _bytes(state["reward_model"]["params"])
      resident["reward model AdamW state"] = _bytes(state["reward_model"]["opt_state"])
    if rl.value is not None:
      resident["value model params"] = _bytes(state["value"]["params"])
      resident["value model AdamW state"] = _bytes(state["value"]["opt_state"])
    return RLPlan(mesh_shape=tuple(rl.mesh.shape[a] for a in msharding.MESH_AXES),
                  num_params=model.count_params(model.abstract_params(model_cfg)), rows=rows,
                  rollout_slots=slots, prefill_prompts=pb, rollout_cache_bytes=cache_bytes,
                  prompt_len=p, completion_len=c, resident=resident, phases=tuple(phases))
  finally:
    rl.close()


def _cache_shardings(rl: RLStep, model_cfg, rows: int, length: int) -> dict:
  """The shardings the engine's cache constraint gives (batch over the data axes, KV heads over tensor)."""
  with rl.scope():
    shapes = jax.eval_shape(lambda: model.init_cache(model_cfg, rows, length))
    out = jax.jit(lambda: engine.constrain_cache(model.init_cache(model_cfg, rows, length))).lower().compile()
  return jax.tree.unflatten(jax.tree.structure(shapes), out.output_shardings if isinstance(
      out.output_shardings, list) else jax.tree.leaves(out.output_shardings))


def table(plans: list[RLPlan]) -> str:
  """A Markdown table of per-device memory, one column per mesh."""
  gib = lambda v: f"{v / GIB:,.2f} GiB"  # noqa: E731
  head = "| per device | " + " | ".join(f"mesh {p.mesh_shape}" for p in plans) + " |"
  lines = [head, "|---" * (len(plans) + 1) + "|"]
  first = plans[0]
  lines.append("| completions x (prompt + new tokens) | " + " | ".join(
      f"{p.rows} x ({p.prompt_len} + {p.completion_len})" for p in plans) + " |")
  lines.append("| prompts prefilled (once each) | " + " | ".join(str(p.prefill_prompts) for p in plans) + " |")
  lines.append("| KV cache slots (continuous batching) | " + " | ".join(str(p.rollout_slots) for p in plans) + " |")
  lines.append("| rollout KV cache (slots x (prompt + new tokens)) | " + " | ".join(
      gib(p.rollout_cache_bytes) for p in plans) + " |")
  for k in first.resident:
    lines.append(f"| resident: {k} | " + " | ".join(gib(p.resident[k]) for p in plans) + " |")
  lines.append("| resident total | " + " | ".join(gib(p.resident_bytes) for p in plans) + " |")
  for i, ph in enumerate(first.phases):
    lines.append(f"| + {ph.name} (extra: args + out - donated + scratch) | " + " | ".join(
        gib(p.phases[i].extra_bytes) for p in plans) + " |")
  lines.append("| **peak estimate** (resident + largest phase) | " + " | ".join(
      f"**{gib(p.peak_bytes)}**" for p in plans) + " |")
  for name, cap in ACCELERATORS.items():
    lines.append(f"| fits {name} | " + " | ".join("yes" if p.fits(cap) else "no" for p in plans) + " |")
  return "\n".join(lines)


def phase_details(plan: RLPlan) -> str:
  gib = lambda v: f"{v / GIB:,.2f}"  # noqa: E731
  lines = ["| phase | arguments | of them resident state | outputs | donated | scratch | extra |", "|---" * 7 + "|"]
  for p in plan.phases:
    lines.append(f"| {p.name} | {gib(p.argument_bytes)} | {gib(p.state_argument_bytes)} | {gib(p.output_bytes)} | "
                 f"{gib(p.alias_bytes)} | {gib(p.temp_bytes)} | {gib(p.extra_bytes)} |")
  return "\n".join(lines)
