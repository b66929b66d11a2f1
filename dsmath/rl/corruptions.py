"""Corrupted copies of the policy's samples, as extra reward-model training rows (reward_model.corrupted_fraction).

RL against a learned reward model drives the policy to outputs the model never saw, and the model scores them as it
happens to: on the toy task a PRM trained on the SFT policy's samples scored a bare "7}" (the tail of "\\boxed{7}") at
0.98, and GRPO turned a third of the rollouts into such outputs (EXPERIMENTS.md). Each function here makes one kind of
output the policy can drift to from a sample it wrote, at the token level (the policy's own tokens, no re-tokenizing);
the rows are graded by the rule grader like every other reward-model row, so a corrupted output that still answers
right is labelled right.

A corruption maps (completion tokens, EOS included when the sample ended; the token index of each step's last token;
the EOS id; a numpy Generator) to new completion tokens, or None where the sample is too short for it.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

Corruption = Callable[[list, Sequence[int], int, np.random.Generator], Optional[list]]


def drop_step(tokens: list, ends: Sequence[int], eos_id: int, rng: np.random.Generator) -> Optional[list]:
  """One step other than the last (which holds the answer) removed: the output skips a step of the work."""
  if len(ends) < 2:
    return None
  k = int(rng.integers(len(ends) - 1))
  start = ends[k - 1] + 1 if k else 0
  return tokens[:start] + tokens[ends[k] + 1:]


def suffix(tokens: list, ends: Sequence[int], eos_id: int, rng: np.random.Generator) -> Optional[list]:
  """The output without its first 1 .. n-2 tokens: it starts mid-way (the bare "7}" of the toy's collapse)."""
  if len(tokens) < 3:
    return None
  return tokens[int(rng.integers(1, len(tokens) - 1)):]


def prefix(tokens: list, ends: Sequence[int], eos_id: int, rng: np.random.Generator) -> Optional[list]:
  """The output's first 1 .. n-2 tokens, then EOS: it stops before it is done."""
  if len(tokens) < 3:
    return None
  return tokens[:int(rng.integers(1, len(tokens) - 1))] + [eos_id]


CORRUPTIONS: dict[str, Corruption] = {"drop_step": drop_step, "suffix": suffix, "prefix": prefix}


def corrupt(tokens: np.ndarray, lengths: np.ndarray, ends: Sequence[Sequence[int]], fraction: float,
            kinds: Sequence[str], eos_id: int, rng: np.random.Generator) -> tuple[np.ndarray, list[list], list[str]]:
  """Corrupted copies of round(fraction x rows) rows drawn without replacement (each copy of a kind drawn uniformly
  from `kinds`; a row too short for its kind gives no copy): (source row indices, new completion tokens, kinds)."""
  unknown = sorted(set(kinds) - set(CORRUPTIONS))
  if unknown:
    raise ValueError(f"unknown corruption(s) {unknown}; known: {sorted(CORRUPTIONS)}")
  n = min(int(round(fraction * len(lengths))), len(lengths))
  rows = np.sort(rng.choice(len(lengths), n, replace=False))
  picked = [kinds[int(i)] for i in rng.integers(len(kinds), size=n)]
  src, out, used = [], [], []
  for r, kind in zip(rows, picked):
    new = CORRUPTIONS[kind](tokens[r, :lengths[r]].tolist(), list(ends[r]), eos_id, rng)
    if new:
      src.append(int(r)), out.append(new), used.append(kind)
  return np.asarray(src, np.int64), out, used
