"""Reward hacking made visible: the learned (proxy) reward beside the rule grader's verdicts of the same rollouts.

A run whose training reward is a learned reward model also grades every rollout with the rule grader, which it never
trains on. Over-optimisation (Gao, Schulman & Hilton 2022) shows as the proxy reward rising while the rule accuracy
falls: `divergent_spans` finds those stretches of steps in the per-step series (trailing means over a window, so one
noisy step does not count), and the loop warns with their step numbers.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Span:
  """Steps [start, end] over which the proxy's trailing mean rose and the rule accuracy's fell, each by at least the
  thresholds, against the window that ended `window` steps before."""
  start: int
  end: int
  proxy_before: float
  proxy_after: float
  rule_before: float
  rule_after: float

  def describe(self) -> str:
    return (f"steps {self.start}-{self.end}: proxy reward {self.proxy_before:.3f} -> {self.proxy_after:.3f} while "
            f"rule accuracy {self.rule_before:.3f} -> {self.rule_after:.3f}")


def trailing_mean(x: Sequence[float], window: int) -> np.ndarray:
  """Mean of the last `window` values at each index (fewer at the start)."""
  x = np.asarray(x, np.float64)
  c = np.concatenate([[0.0], np.cumsum(x)])
  idx = np.arange(1, len(x) + 1)
  lo = np.maximum(idx - window, 0)
  return (c[idx] - c[lo]) / (idx - lo)


def divergent_spans(steps: Sequence[int], proxy: Sequence[float], rule: Sequence[float], *, window: int = 20,
                    min_rise: float = 0.05, min_fall: float = 0.05) -> list[Span]:
  """Stretches where the proxy reward rose while rule accuracy fell.

  steps, proxy, rule: one value per RL step (same length, steps increasing). Both series are smoothed by trailing
  means over `window` steps. Step index i is divergent when some earlier index j <= i - window has a proxy mean lower
  by >= min_rise and a rule mean higher by >= min_fall: a fast swing and a slow drift over the whole run both count.
  Divergent steps less than `window` steps apart form one span, reported with the means at its last step and at the
  earlier index that shows the largest rule fall for its first step.
  """
  if not len(steps) == len(proxy) == len(rule):
    raise ValueError(f"steps, proxy and rule differ in length: {len(steps)}, {len(proxy)}, {len(rule)}")
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  p, r = trailing_mean(proxy, window), trailing_mean(rule, window)
  earlier: dict[int, int] = {}
  for i in range(2 * window - 1, len(steps)):
    j = np.arange(window - 1, i - window + 1)  # earlier windows that are full and do not overlap i's
    ok = (p[i] - p[j] >= min_rise) & (r[j] - r[i] >= min_fall)
    if ok.any():
      earlier[i] = int(j[ok][np.argmax(r[j][ok])])
  groups: list[list[int]] = []
  for i in sorted(earlier):
    if groups and i - groups[-1][-1] < window:
      groups[-1].append(i)
    else:
      groups.append([i])
  return [Span(start=int(steps[g[0]]), end=int(steps[g[-1]]), proxy_before=float(p[earlier[g[0]]]),
               proxy_after=float(p[g[-1]]), rule_before=float(r[earlier[g[0]]]), rule_after=float(r[g[-1]]))
          for g in groups]


def window_for(total_steps: int) -> int:
  """The trailing window of a run's check: a tenth of its steps, between 5 and 20."""
  return int(min(20, max(5, total_steps // 10)))


def spans_of_run(run_dir, window: int | None = None) -> list[Span]:
  """divergent_spans of a finished or running RL stage, from its metrics.jsonl (proxy_reward_mean vs accuracy)."""
  import json
  from pathlib import Path
  rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
  rows = [row for row in rows if "proxy_reward_mean" in row]
  if not rows:
    return []
  return divergent_spans([row["step"] for row in rows], [row["proxy_reward_mean"] for row in rows],
                         [row["accuracy"] for row in rows], window=window or window_for(len(rows)))

