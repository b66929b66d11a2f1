"""Ranking and global selection: keep the top pages by score under a count/token budget, or above a threshold.

Pages are ranked by the key (-score, canonical_url): unique after URL dedup, so the ranking is total and the
selection is the same however the pages are partitioned. A budget keeps the longest prefix of the ranking whose
total weight (1 per page, or its token count) stays within the budget. The cutoff is the rank key of the last kept
page; selection is `rank_key(page) <= cutoff`, so only the cutoff (one tuple) needs to reach every worker.

Token counts are whitespace-separated words (`len(text.split())`), an approximation of tokenizer tokens (for English
web text a BPE tokenizer gives roughly 1.3x as many); it is cheap and needs no tokenizer on the workers.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

RankKey = tuple  # (-score, canonical_url)
BUDGET_KINDS = ("count", "tokens", "threshold")


@dataclasses.dataclass(frozen=True)
class Budget:
  """kind: 'count' (pages), 'tokens' (whitespace tokens) or 'threshold' (min score); value: the budget/threshold."""
  kind: str
  value: float

  def __post_init__(self):
    if self.kind not in BUDGET_KINDS:
      raise ValueError(f"selection.kind must be one of {BUDGET_KINDS}, got {self.kind!r}")
    if self.kind != "threshold" and self.value < 0:
      raise ValueError(f"selection.budget must be >= 0, got {self.value}")

  def weight(self, tokens: int) -> int:
    return tokens if self.kind == "tokens" else 1


def count_tokens(text: str) -> int:
  """Approximate token count: whitespace-separated words."""
  return len(text.split())


def rank_key(score: float, canonical_url: str) -> RankKey:
  return (-float(score), canonical_url)


def truncate_ranked(items: Iterable[tuple], budget: Budget) -> list[tuple]:
  """Longest prefix (in rank order) of (rank_key, weight) items whose total weight is <= budget.value.

  Also the accumulator of the mergeable Beam combine: the global prefix is contained in the union of each
  partition's prefix, because a page left out of its partition's prefix already has > budget weight ranked above it.
  """
  out, total = [], 0
  for key, weight in sorted(items):
    if total + weight > budget.value:
      break
    total += weight
    out.append((key, weight))
  return out


def cutoff_from_prefix(prefix: Sequence[tuple]) -> RankKey | None:
  """The rank key of the last kept page (None: nothing fits)."""
  return prefix[-1][0] if prefix else None


def is_selected(score: float, canonical_url: str, budget: Budget, cutoff: RankKey | None) -> bool:
  """Whether a page is kept, given the global cutoff (ignored for threshold budgets)."""
  if budget.kind == "threshold":
    return float(score) >= budget.value
  return cutoff is not None and rank_key(score, canonical_url) <= cutoff


def select_top(scored: Sequence[dict], budget: Budget) -> list[dict]:
  """Stage function: the selected pages among `scored` (dicts with 'score', 'canonical_url', 'tokens'), ranked."""
  cutoff = None
  if budget.kind != "threshold":
    cutoff = cutoff_from_prefix(truncate_ranked(
        ((rank_key(p["score"], p["canonical_url"]), budget.weight(p["tokens"])) for p in scored), budget))
  kept = [p for p in scored if is_selected(p["score"], p["canonical_url"], budget, cutoff)]
  return sorted(kept, key=lambda p: rank_key(p["score"], p["canonical_url"]))
