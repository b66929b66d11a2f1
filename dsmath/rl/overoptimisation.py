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
  """Stretches where the proxy reward rises while rule accuracy falls.

  steps, proxy, rule: one value per RL step (same length, steps increasing). At step index i >= 2 * window - 1 the
  trailing means over the last `window` steps are compared with those `window` steps earlier; i is divergent when the
  proxy mean rose by >= min_rise and the rule mean fell by >= min_fall. Divergent steps less than `window` steps
  apart form one span, reported with the means at its first step's earlier window and at its last step.
  """
  if not len(steps) == len(proxy) == len(rule):
    raise ValueError(f"steps, proxy and rule differ in length: {len(steps)}, {len(proxy)}, {len(rule)}")
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  p, r = trailing_mean(proxy, window), trailing_mean(rule, window)
  hits = [i for i in range(2 * window - 1, len(steps))
          if p[i] - p[i - window] >= min_rise and r[i - window] - r[i] >= min_fall]
  groups: list[list[int]] = []
  for i in hits:
    if groups and i - groups[-1][-1] < window:
      groups[-1].append(i)
    else:
      groups.append([i])
  return [Span(start=int(steps[g[0]]), end=int(steps[g[-1]]), proxy_before=float(p[g[0] - window]),
               proxy_after=float(p[g[-1]]), rule_before=float(r[g[0] - window]), rule_after=float(r[g[-1]]))
          for g in groups]


def window_for(total_steps: int) -> int:
  """The trailing window of a run's check: a tenth of its steps, between 5 and 20."""
  return int(min(20, max(5, total_steps // 10)))
