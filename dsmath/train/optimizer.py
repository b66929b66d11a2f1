"""AdamW with global-norm clipping, a weight-decay mask and the paper's learning-rate schedules, all from optax."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import jax
import optax


def multistep_schedule(peak_lr: float, warmup_steps: int, total_steps: int, boundaries: Sequence[float],
                       factors: Sequence[float]) -> optax.Schedule:
  """DeepSeek's multi-step schedule: linear warm-up 0 -> peak, then peak * factors[i] from boundaries[i] * total on.

  With the paper's values (2000, [0.8, 0.9], [0.316, 0.1]) the lr is 4.2e-4 until 80% of the steps, 1.33e-4 until
  90%, then 4.2e-5. `factors` are relative to the peak (not to the previous stage).
  """
  warmup_steps = max(int(warmup_steps), 0)
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


def make_schedule(opt_cfg: Mapping, total_steps: int) -> optax.Schedule:
  name = opt_cfg["schedule"]
  if name not in SCHEDULES:
    raise KeyError(f"config.optimizer.schedule={name!r} is unknown; valid: {sorted(SCHEDULES)}")
  return SCHEDULES[name](peak_lr=float(opt_cfg["peak_lr"]), warmup_steps=int(opt_cfg["warmup_steps"]),
                         total_steps=int(total_steps), decay_boundaries=list(opt_cfg["decay_boundaries"]),
                         decay_factors=list(opt_cfg["decay_factors"]),
                         final_lr_fraction=float(opt_cfg["final_lr_fraction"]))


def decay_mask(params, no_decay: Sequence[str] = ("norm",)):
  """True where weight decay applies: matrices (ndim >= 2) whose path names none of the `no_decay` substrings.

  Norm scales and any vector (biases, gains) are not decayed: pulling a gain towards 0 fights the normalisation it
  parameterises. Embedding and LM-head matrices are decayed (LLaMA / DeepSeek practice).
  """
  def decays(path, leaf):
    name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return leaf.ndim >= 2 and not any(s in name for s in no_decay)
  return jax.tree_util.tree_map_with_path(decays, params)


# Allowed range (low, high, high inclusive) of every numeric hyper-parameter; lists are checked element-wise.
# A NaN or inf here would reach the params through the first update, so each is checked before anything is built.
_RANGES = {
    "peak_lr": (0.0, math.inf, False),
    "warmup_steps": (0.0, math.inf, False),
    "b1": (0.0, 1.0, False),
    "b2": (0.0, 1.0, False),
    "eps": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, False),
    "grad_clip": (0.0, math.inf, False),  # 0 disables clipping
    "final_lr_fraction": (0.0, 1.0, True),
    "decay_boundaries": (0.0, 1.0, True),  # fractions of total_steps
    "decay_factors": (0.0, math.inf, False),
}


def check_hyperparameters(opt_cfg: Mapping) -> None:
  """ValueError naming `optimizer.<key>` and the value for a hyper-parameter that is not a finite number in range.

  Stands alone (config schemas may check too): this is the last check before the values reach the update."""
  for key, (low, high, high_inclusive) in _RANGES.items():
    if key not in opt_cfg:
      continue
    value = opt_cfg[key]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, v in enumerate(items):
      name = f"optimizer.{key}" + (f"[{i}]" if isinstance(value, (list, tuple)) else "")
      try:
        v = float(v)
      except (TypeError, ValueError):
        raise ValueError(f"config.{name} must be a number, got {type(v).__name__} {v!r}") from None
      if not math.isfinite(v):
        raise ValueError(f"config.{name} must be finite, got {v}")
      if not (low <= v and (v <= high if high_inclusive else v < high)):
        raise ValueError(f"config.{name} must be in [{low}, {high}{']' if high_inclusive else ')'}, got {v}")
  if "warmup_steps" in opt_cfg and not float(opt_cfg["warmup_steps"]).is_integer():
    raise ValueError(f"config.optimizer.warmup_steps must be a whole number of steps, got {opt_cfg['warmup_steps']}")


def make_optimizer(opt_cfg: Mapping, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(clip_by_global_norm -> AdamW with decoupled, lr-scaled, masked weight decay, schedule) from config.optimizer.

  Every numeric hyper-parameter must be finite and in range (ValueError naming the key otherwise). `opt_cfg` is a
  mapping (ConfigDict, dict) or a config dataclass with the same fields."""
  if dataclasses.is_dataclass(opt_cfg) and not isinstance(opt_cfg, type):
    opt_cfg = dataclasses.asdict(opt_cfg)
  check_hyperparameters(opt_cfg)
  schedule = make_schedule(opt_cfg, total_steps)
  no_decay = tuple(opt_cfg["no_decay"])
  parts = []
  if float(opt_cfg["grad_clip"]) > 0:
    parts.append(optax.clip_by_global_norm(float(opt_cfg["grad_clip"])))
  parts.append(optax.adamw(schedule, b1=float(opt_cfg["b1"]), b2=float(opt_cfg["b2"]), eps=float(opt_cfg["eps"]),
                           weight_decay=float(opt_cfg["weight_decay"]), mask=lambda p: decay_mask(p, no_decay)))
  return optax.chain(*parts), schedule
