"""Pass@k (unbiased) and Maj@k over equivalence classes of sampled answers: the sampling metrics of the paper."""
from __future__ import annotations

import collections
from typing import Callable, Hashable, Sequence

import numpy as np


def pass_at_k(n: int | np.ndarray, c: int | np.ndarray, k: int) -> np.ndarray:
  """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

  Evaluated as 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms large binomials (stable for n in the
  thousands). n, c: scalars or arrays of the same shape [P]; returns float64 of that shape.
  """
  n = np.asarray(n, dtype=np.int64)
  c = np.asarray(c, dtype=np.int64)
  if np.any(c < 0) or np.any(c > n):
    raise ValueError("pass_at_k needs 0 <= c <= n")
  if k < 1 or np.any(k > n):
    raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
  out = np.empty(np.broadcast(n, c).shape, dtype=np.float64)
  for idx in np.ndindex(out.shape):
    ni, ci = int(n[idx] if n.ndim else n), int(c[idx] if c.ndim else c)
    if ni - ci < k:
      out[idx] = 1.0
    else:
      i = np.arange(ni - ci + 1, ni + 1, dtype=np.float64)
      out[idx] = 1.0 - np.exp(np.sum(np.log1p(-k / i)))
  return out


class UnionFind:
  def __init__(self, n: int):
    self.parent = list(range(n))

  def find(self, i: int) -> int:
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return i

  def union(self, i: int, j: int) -> None:
    a, b = self.find(i), self.find(j)
    if a != b:
      self.parent[max(a, b)] = min(a, b)  # the earliest index stays the root: deterministic


def group_answers(per_problem_answers: Sequence[Sequence[str | None]], per_problem_correct: Sequence[Sequence[bool]],
                  equal_many: Callable[[list[tuple[str, str]]], list[bool]],
                  key_fn: Callable[[str], Hashable]) -> list[list[int]]:
  """Equivalence classes of each problem's sample answers, as a class id per sample (the earliest member's index).

  Answers with the same `key_fn` (normalised string) are one class; all answers graded correct are one class (they
  all equal the gold answer); the remaining distinct incorrect answers are compared pairwise by `equal_many` (the
  grader, batched across problems) and merged by union-find. None (no answer) is never grouped: class -1.
  """
  ufs, pair_index = [], []
  pairs: list[tuple[str, str]] = []
  for p, (answers, correct) in enumerate(zip(per_problem_answers, per_problem_correct)):
    uf = UnionFind(len(answers))
    first_by_key: dict[Hashable, int] = {}
    first_correct = None
    for i, (a, ok) in enumerate(zip(answers, correct)):
      if a is None:
        continue
      k = key_fn(a)
      if k in first_by_key:
        uf.union(first_by_key[k], i)
      else:
        first_by_key[k] = i
      if ok:
        if first_correct is None:
          first_correct = i
        else:
          uf.union(first_correct, i)
    reps = [i for i in first_by_key.values() if not correct[i]]
    for x in range(len(reps)):
      for y in range(x + 1, len(reps)):
        pairs.append((answers[reps[x]], answers[reps[y]]))
        pair_index.append((p, reps[x], reps[y]))
    ufs.append(uf)
  if pairs:
    for (p, i, j), same in zip(pair_index, equal_many(pairs)):
      if same:
        ufs[p].union(i, j)
  return [[ufs[p].find(i) if a is not None else -1 for i, a in enumerate(answers)]
          for p, answers in enumerate(per_problem_answers)]


def majority_correct(classes: Sequence[int], correct: Sequence[bool], k: int) -> bool:
  """Maj@k for one problem from its first k samples: the most frequent class wins; ties go to the class seen first.

  A class is correct iff its members are graded correct (they are equivalent, so all agree). No answer (-1) never wins.
  """
  counts = collections.Counter(c for c in classes[:k] if c >= 0)
  if not counts:
    return False
  first_seen = {}
  for i, c in enumerate(classes[:k]):
    if c >= 0 and c not in first_seen:
      first_seen[c] = i
  best = max(counts, key=lambda c: (counts[c], -first_seen[c]))
  return bool(correct[first_seen[best]])


def maj_at_k(classes: Sequence[Sequence[int]], correct: Sequence[Sequence[bool]], k: int) -> np.ndarray:
  """Per-problem Maj@k verdicts (float 0/1) [P] using each problem's first k samples."""
  return np.array([majority_correct(cl, co, k) for cl, co in zip(classes, correct)], dtype=np.float64)
