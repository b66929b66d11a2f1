"""Metric-vs-step plots with confidence bands (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from dsmath.files import write_atomic


def plot_curve(curve: Mapping, path: str | Path, *, title: str = "", ylabel: str = "", confidence: float = 0.95) -> None:
  """One line per group (mean over replicates) with a shaded band between the t-interval bounds; PNG, atomic."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
  for group, c in curve["groups"].items():
    steps = np.asarray(c["steps"])
    mean = np.asarray(c["mean"])
    line, = ax.plot(steps, mean, label=f"{group} (n={c['n']})", lw=1.5)
    low, high = np.asarray(c["low"], float), np.asarray(c["high"], float)
    if np.isfinite(low).any():
      ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel or curve["spec"].get("key", ""))
  ax.set_title(title or curve["spec"].get("title") or curve["spec"]["name"], fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, title=f"mean, {int(round(100 * confidence))}% t-band", title_fontsize=8)
  fig.tight_layout()
  write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
  plt.close(fig)
