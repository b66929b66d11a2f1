"""A step's training rows (`Experience`) and the batch layout every RL forward reads.

Rows: prompt tokens left-padded to P (`prompt`, `prompt_mask`) and completion tokens right-padded to C (`completion`,
`mask`: 1 on the tokens the policy wrote, the only ones a loss trains on); with tool-integrated rollouts also
`context_mask` (1 on every completion token the model reads: its own and the tools' output blocks). Then what the
step adds: `old_logp`, `ref_logp`, `old_values`, `advantages`, `returns`, all [R, C].
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Experience:
  """A step's training rows: `batch` holds device arrays [R, ...] (R = questions x samples) for the update; the rest
  is what the host needed (texts for the grader) or reports."""
  batch: dict
  texts: list
  question_index: np.ndarray  # [R] index into task.train
  rewards: np.ndarray  # [R] host copy (metrics, dynamic sampling)
  correct: np.ndarray  # [R] rule verdicts (accuracy, whatever the reward)
  lengths: np.ndarray
  truncated: np.ndarray
  metrics: dict = dataclasses.field(default_factory=dict)
  sampled: bool = True  # rows sampled in this step (rollout metrics apply); False for gold / offline rows
  # What a learned reward model said of each row (None without one): `proxy` [R] its score of the row (an ORM's
  # last-token score, a PRM's mean step score); `step_scores` a process reward's score of each step (list per row).
  proxy: Optional[np.ndarray] = None
  step_scores: Optional[list] = None

  @property
  def rows(self) -> int:
    return len(self.texts)


def concat(parts: Sequence[Experience]) -> Experience:
  first = parts[0]
  if len(parts) == 1:
    return first
  batch = {k: jnp.concatenate([p.batch[k] for p in parts]) for k in first.batch}
  cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
  return Experience(batch=batch, texts=[t for p in parts for t in p.texts], question_index=cat("question_index"),
                    rewards=cat("rewards"), correct=cat("correct"), lengths=cat("lengths"),
                    truncated=cat("truncated"), metrics=dict(first.metrics),
                    proxy=None if first.proxy is None else cat("proxy"),
                    step_scores=None if first.step_scores is None else [s for p in parts for s in p.step_scores])


def take_rows(exp: Experience, rows: np.ndarray) -> Experience:
  idx = jnp.asarray(rows)
  return Experience(batch={k: v[idx] for k, v in exp.batch.items()}, texts=[exp.texts[i] for i in rows],
                    question_index=exp.question_index[rows], rewards=exp.rewards[rows], correct=exp.correct[rows],
                    lengths=exp.lengths[rows], truncated=exp.truncated[rows], metrics=dict(exp.metrics),
                    proxy=None if exp.proxy is None else exp.proxy[rows],
                    step_scores=None if exp.step_scores is None else [exp.step_scores[i] for i in rows])


def attended(batch: dict) -> jax.Array:
  """The completion tokens a forward reads: with tools, the model's tokens and the output blocks (`context_mask`);
  else the completion (`mask`)."""
  return batch.get("context_mask", batch["mask"])


def rollout_metrics(exp: Experience, group: int) -> dict:
  """What a step's rollout looked like: reward and accuracy, signal (zero-variance groups), lengths, truncation."""
  if not exp.rows or not exp.sampled:
    return {}
  r = exp.rewards.astype(np.float32)
  out = {"reward_mean": float(r.mean()), "reward_std": float(r.std()), "accuracy": float(exp.correct.mean()),
         "completion_len_mean": float(exp.lengths.mean()), "completion_len_max": float(exp.lengths.max()),
         "truncated_fraction": float(exp.truncated.mean())}
  if group > 1 and exp.rows % group == 0:
    g = r.reshape(-1, group)
    out["zero_std_group_fraction"] = float(np.mean(g.max(1) == g.min(1)))
  if exp.proxy is not None:  # the learned reward beside the rule accuracy above: over-optimisation shows between them
    out["proxy_reward_mean"] = float(np.mean(exp.proxy))
  if exp.step_scores is not None:  # the reward model's mean score by step position (a drift along solutions shows)
    for k in range(STEP_POSITIONS):
      at = [s[k] for s in exp.step_scores if len(s) > k]
      if at:
        out[f"step_reward_pos{k + 1}"] = float(np.mean(at))
    out["step_reward_last"] = float(np.mean([s[-1] for s in exp.step_scores if s]))
  return out


STEP_POSITIONS = 4  # step_reward_pos1..4 in the metrics


def rollout_records(exp: Experience, advantages: Optional[np.ndarray] = None) -> list[dict]:
  """One record per rollout for rollouts.jsonl: question, text, the rule verdict beside the training reward and what
  the learned reward model said (its score; a PRM's score of each step); `advantages` [R, 2] adds each row's mean
  advantage over its tokens and its sum of |A| (what the update did with it)."""
  out = []
  for r in range(exp.rows):
    rec = {"question": int(exp.question_index[r]), "text": exp.texts[r], "correct": float(exp.correct[r]),
           "reward": float(exp.rewards[r]), "length": int(exp.lengths[r])}
    if advantages is not None:
      rec["adv_mean"], rec["adv_abs_sum"] = float(advantages[r, 0]), float(advantages[r, 1])
    if exp.proxy is not None:
      rec["rm_score"] = float(exp.proxy[r])
    if exp.step_scores is not None:
      rec["step_scores"] = [round(float(v), 5) for v in exp.step_scores[r]]
    out.append(rec)
  return out
