"""One jitted, sharded, donating train step built from any `loss_fn(params, batch, rng) -> (loss, metrics)`.

The train state is a plain dict pytree (what orbax saves):
  params       the model params.
  opt_state    the optax state.
  step         int32 [], steps taken (applied or skipped).
  rng          uint32 [2], raw key data of the run's base key (a typed key does not checkpoint as plainly); step s
               uses fold_in(key, s), micro-batch i fold_in(that, i).
  num_skipped  int32 [], steps whose update was skipped because the loss, the gradient or the updated params were
               not finite.

Gradient accumulation is a `lax.scan` over micro-batches inside the step (not optax.MultiSteps): the state holds no
partial gradients, so every checkpoint is at a whole step (exact resume) and the donated state is just params +
opt_state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from dsmath import model as model_api
from dsmath.model import ModelConfig, abstract_params
from dsmath.model import sharding as msharding
from dsmath.train.loss import LossFn


def init_state(params: dict, optimizer: optax.GradientTransformation, seed: int) -> dict:
  """A fresh train state around `params` (opt_state is created with the params' shardings)."""
  return {"params": params, "opt_state": optimizer.init(params), "step": jnp.zeros((), jnp.int32),
          "rng": jax.random.key_data(jax.random.key(seed)), "num_skipped": jnp.zeros((), jnp.int32)}


def abstract_state(cfg: ModelConfig, optimizer: optax.GradientTransformation) -> dict:
  """Shapes/dtypes of the train state, allocating nothing."""
  return jax.eval_shape(lambda p: init_state(p, optimizer, 0), abstract_params(cfg))


def sharded_abstract_state(train_step: "TrainStep", optimizer: optax.GradientTransformation, params) -> dict:
  """ShapeDtypeStructs (with the step's shardings) of a train state around `params` (arrays or abstract), allocating
  nothing: the restore target of a checkpoint."""
  shapes = jax.eval_shape(lambda p: init_state(p, optimizer, 0), params)
  return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), shapes,
                      train_step.state_shardings)


def state_shardings(cfg: ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh, rules,
                    params_like: Optional[tuple] = None) -> dict:
  """NamedShardings of the train state: params (and their optimizer moments) by the logical rules, the rest
  replicated. params_like: (abstract params, their shardings) of a params tree that is not the model's own (a
  scalar-head value or reward model)."""
  if params_like is None:
    param_sh, abstract = msharding.param_shardings(cfg, mesh, rules), abstract_state(cfg, optimizer)
  else:
    param_sh = params_like[1]
    abstract = jax.eval_shape(lambda p: init_state(p, optimizer, 0), params_like[0])
  rep = msharding.replicated(mesh)
  opt_sh = optax.tree_map_params(optimizer, lambda _, sh: sh, abstract["opt_state"], param_sh,
                                 transform_non_params=lambda _: rep)
  return {"params": param_sh, "opt_state": opt_sh, "step": rep, "rng": rep, "num_skipped": rep}


def microbatches(batch: dict, n: int) -> dict:
  """[B, ...] -> [n, B // n, ...] taking rows i, i + n, ... into micro-batch i, so each data shard splits evenly."""
  def split(x):
    b = x.shape[0]
    if b % n:
      raise ValueError(f"batch of {b} rows does not split into {n} micro-batches (config.train.grad_accum_steps, "
                       f"or config.rl.grad_accum_steps for the RL stage)")
    return jnp.swapaxes(x.reshape(b // n, n, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def unmicrobatch(x: jax.Array) -> jax.Array:
  """The inverse of `microbatches` for one array: [n, B // n, ...] -> [B, ...] in the original row order."""
  return jnp.swapaxes(x, 0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _where(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def all_finite(tree) -> jax.Array:
  """bool []: no NaN/inf in any leaf (one reduction per leaf, fused by XLA)."""
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def build_step_fn(optimizer: optax.GradientTransformation, loss_fn: LossFn, grad_accum_steps: int = 1):
  """The un-jitted step: (state, batch) -> (state, metrics).

  metrics: loss (weighted mean over micro-batches), grad_norm (before clipping), skipped (1 if the update was
  dropped because the loss, the gradient norm or the updated params were NaN/inf), loss_weight (summed), plus the
  loss's own metrics (weighted means).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step_fn(state: dict, batch: dict):
    params = state["params"]
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    if grad_accum_steps == 1:
      (loss, aux), grads = grad_fn(params, batch, step_key)
      weight = aux.pop("loss_weight", jnp.ones((), jnp.float32))
    else:
      micro = microbatches(batch, grad_accum_steps)

      def body(carry, xs):
        mb, i = xs
        (l, aux), g = grad_fn(params, mb, jax.random.fold_in(step_key, i))
        w = aux.pop("loss_weight", jnp.ones((), jnp.float32)).astype(jnp.float32)
        acc_g, acc_l, acc_w, acc_aux = carry
        acc_g = jax.tree.map(lambda a, b: a + w * b.astype(jnp.float32), acc_g, g)
        acc_aux = jax.tree.map(lambda a, b: a + w * b, acc_aux, aux)
        return (acc_g, acc_l + w * l, acc_w + w, acc_aux), None

      aux_shape = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro), step_key)[0][1])
      aux_shape = {k: v for k, v in aux_shape.items() if k != "loss_weight"}
      zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), t)
      init = (zeros(params), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros(aux_shape))
      (grads, loss, weight, aux), _ = jax.lax.scan(body, init, (micro, jnp.arange(grad_accum_steps)))
      denom = jnp.maximum(weight, 1e-30)
      grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads, params)
      loss, aux = loss / denom, jax.tree.map(lambda a: a / denom, aux)
    grad_norm = optax.global_norm(grads)
    updates, new_opt = optimizer.update(grads, state["opt_state"], params)
    new_params = optax.apply_updates(params, updates)
    # Finite loss and gradient do not make a finite update (a NaN/inf lr or other hyper-parameter, an overflow of
    # lr * update): the new params themselves are checked, so no step ever writes a NaN/inf into the state.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(new_params)
    new_state = {
        "params": _where(finite, new_params, params),
        "opt_state": _where(finite, new_opt, state["opt_state"]),
        "step": state["step"] + 1,
        "rng": state["rng"],
        "num_skipped": state["num_skipped"] + (~finite).astype(jnp.int32),
    }
    metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": (~finite).astype(jnp.int32), "loss_weight": weight,
               **aux}
    return new_state, metrics

  return step_fn


@dataclasses.dataclass(frozen=True)
class TrainStep:
  """A jitted step with its shardings. Call it like the function; `lower` gives the AOT stage (for compile plans)."""
  jitted: Any
  mesh: Mesh
  rules: tuple
  state_shardings: dict
  batch_sharding: NamedSharding

  def __call__(self, state: dict, batch: dict):
    with msharding.activation_rules(self.mesh, self.rules):
      return self.jitted(state, batch)

  def lower(self, state, batch):
    """AOT: `step.lower(abstract_state, abstract_batch).compile()` (ShapeDtypeStructs are fine)."""
    with msharding.activation_rules(self.mesh, self.rules):
      return self.jitted.lower(state, batch)

  def shard_batch(self, batch: dict) -> dict:
    """Per-process numpy batch [B_local, T] -> global jax arrays sharded over the data axes."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in batch.items()}


def make_train_step(cfg: ModelConfig, optimizer: optax.GradientTransformation, loss_fn: LossFn, *,
                    mesh: Optional[Mesh] = None, rules=msharding.DEFAULT_RULES, grad_accum_steps: int = 1,
                    donate: bool = True, params_like: Optional[tuple] = None) -> TrainStep:
  """A TrainStep for `loss_fn`: jit with the state sharded by the logical rules, the batch over the data axes,
  the state donated (its buffers are reused for the new state). params_like: see `state_shardings`."""
  mesh = mesh if mesh is not None else msharding.make_mesh((1, -1, 1))
  rules = msharding.rules_from_config(rules)
  state_sh = state_shardings(cfg, optimizer, mesh, rules, params_like)
  batch_sh = msharding.batch_sharding(mesh, rules)
  rep = msharding.replicated(mesh)
  jitted = jax.jit(build_step_fn(optimizer, loss_fn, grad_accum_steps), in_shardings=(state_sh, batch_sh),
                   out_shardings=(state_sh, rep), donate_argnums=(0,) if donate else ())
  return TrainStep(jitted=jitted, mesh=mesh, rules=rules, state_shardings=state_sh, batch_sharding=batch_sh)


def new_state(train_step: TrainStep, cfg: ModelConfig, optimizer: optax.GradientTransformation, seed: int,
              params: Optional[dict] = None) -> dict:
  """A fresh state born sharded (never whole on one device): params from `params` if given, else init from seed."""
  sh = train_step.state_shardings
  with msharding.activation_rules(train_step.mesh, train_step.rules):
    if params is None:
      return jax.jit(lambda: init_state(model_api.init_params(cfg, jax.random.key(seed)), optimizer, seed),
                     out_shardings=sh)()
    # params are copied into the state (never aliased): the caller may keep using its own arrays.
    return jax.jit(lambda p: init_state(jax.tree.map(jnp.copy, p), optimizer, seed), in_shardings=(sh["params"],),
                   out_shardings=sh)(params)
