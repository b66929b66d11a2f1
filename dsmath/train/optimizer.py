"""AdamW with global-norm clipping, a weight-decay mask and the paper's learning-rate schedules, all from optax."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import optax

from dsmath import config as config_lib
from dsmath.train.config import OptimizerConfig


def multistep_schedule(peak_lr: float, warmup_steps: int, total_steps: int, boundaries: Sequence[float],
                       factors: Sequence[float]) -> optax.Schedule:
  """DeepSeek's multi-step schedule: linear warm-up 0 -> peak, then peak * factors[i] from boundaries[i] * total on.

  With the paper's values (2000, [0.8, 0.9], [0.316, 0.1]) the lr is 4.2e-4 until 80% of the steps, 1.33e-4 until
  90%, then 4.2e-5. `factors` are relative to the peak (not to the previous stage).
  """
  warmup_steps = max(warmup_steps, 0)
  scales, prev = {}, 1.0
  for frac, factor in zip(boundaries, factors):
    # piecewise_constant_schedule multiplies cumulatively; its step counter restarts after the warm-up.
    scales[int(round(frac * total_steps)) - warmup_steps] = factor / prev
    prev = factor
  decay = optax.piecewise_constant_schedule(peak_lr, scales)
  if warmup_steps == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup_steps), decay], [warmup_steps])


def constant_schedule(peak_lr: float, warmup_steps: int, total_steps: int, **_) -> optax.Schedule:
  """Linear warm-up to peak_lr, then constant (the paper's SFT: 5e-5)."""
  del total_steps
  if warmup_steps <= 0:
    return optax.constant_schedule(peak_lr)
  return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup_steps), optax.constant_schedule(peak_lr)],
                              [warmup_steps])


def cosine_schedule(peak_lr: float, warmup_steps: int, total_steps: int, final_lr_fraction: float = 0.1,
                    **_) -> optax.Schedule:
  """Warm-up then cosine decay to final_lr_fraction * peak (an alternative, not the paper's)."""
  return optax.warmup_cosine_decay_schedule(0.0, peak_lr, max(warmup_steps, 1), max(total_steps, warmup_steps + 1),
                                            end_value=final_lr_fraction * peak_lr)


def _multistep(peak_lr, warmup_steps, total_steps, decay_boundaries=(), decay_factors=(), **_):
  return multistep_schedule(peak_lr, warmup_steps, total_steps, decay_boundaries, decay_factors)


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "multistep": _multistep,
    "constant": constant_schedule,
    "cosine": cosine_schedule,
}


def make_schedule(opt: OptimizerConfig, total_steps: int) -> optax.Schedule:
  return SCHEDULES[opt.schedule](peak_lr=opt.peak_lr, warmup_steps=opt.warmup_steps, total_steps=total_steps,
                                 decay_boundaries=opt.decay_boundaries, decay_factors=opt.decay_factors,
                                 final_lr_fraction=opt.final_lr_fraction)


def decay_mask(params, no_decay: Sequence[str] = ("norm", "bias")):
  """True where weight decay applies: matrices (ndim >= 2) whose path names none of the `no_decay` substrings.

  Norm scales and any vector (biases, gains) are not decayed: pulling a gain towards 0 fights the normalisation it
  parameterises. Embedding and LM-head matrices are decayed (LLaMA / DeepSeek practice).
  """
  def decays(path, leaf):
    name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return leaf.ndim >= 2 and not any(s in name for s in no_decay)
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt_cfg: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(clip_by_global_norm -> AdamW with decoupled, lr-scaled, masked weight decay, schedule) from config.optimizer:
  an OptimizerConfig, or a mapping / dataclass with its fields, checked against it (every hyper-parameter finite and
  in range; ConfigError naming `config.optimizer.<key>` otherwise)."""
  opt = opt_cfg if isinstance(opt_cfg, OptimizerConfig) else config_lib.resolve(OptimizerConfig, opt_cfg,
                                                                                "config.optimizer")
  schedule = make_schedule(opt, total_steps)
  parts = []
  if opt.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(opt.grad_clip))
  parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                           mask=lambda p: decay_mask(p, opt.no_decay)))
  return optax.chain(*parts), schedule
