"""Accuracy, breakdowns, bootstrap confidence intervals and the Figure-7 style plot."""
from __future__ import annotations

import collections
from typing import Hashable, Mapping, Sequence

import numpy as np

from dsmath.files import write_atomic


def bootstrap_ci(values: Sequence[float], *, num_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap CI of the mean over problems (values [P]); deterministic for a seed."""
  v = np.asarray(values, dtype=np.float64)
  if v.size == 0:
    return (float("nan"), float("nan"))
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, v.size, size=(num_resamples, v.size))].mean(axis=1)
  return (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


def breakdown(values: Sequence[float], groups: Sequence[Hashable]) -> dict[str, dict[str, float]]:
  """Mean and count of per-problem `values` for each group label (subject, level, grade...)."""
  acc: dict[str, list[float]] = collections.defaultdict(list)
  for v, g in zip(values, groups):
    acc[str(g)].append(float(v))
  return {g: {"accuracy": float(np.mean(vs)), "count": len(vs)} for g, vs in sorted(acc.items())}


def summary_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
  """A Markdown table of `rows` (dicts) with the given columns; floats as percentages with one decimal."""
  def fmt(v):
    if isinstance(v, float):
      return f"{100 * v:.1f}"
    return str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


def plot_pass_maj(curves: Mapping[str, Mapping[str, Mapping[int, float]]], path: str, title: str = "") -> None:
  """Figure-7 style PNG: for each run name, Maj@K and Pass@K (percent) against K on a log2 axis.

  curves: {run_name: {"pass": {k: value}, "maj": {k: value}}}. Written atomically.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  for ax, metric, label in ((axes[0], "maj", "Maj@K"), (axes[1], "pass", "Pass@K")):
    for name, c in curves.items():
      ks = sorted(c[metric])
      ax.plot(ks, [100 * c[metric][k] for k in ks], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K: number of samples")
    ax.set_ylabel(f"{label} accuracy (%)")
    ax.set_title(f"{title} {label}".strip())
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
  plt.close(fig)
