"""The paradigm's data sources besides the current policy's samples (dsmath.rl.rollout): gold SFT solutions, and the
offline samples of the initial (SFT) policy that RFT and DPO train on; and `STEPS`, one RL step on each kind of data,
which the data-source registry (dsmath.rl.methods.DATA_SOURCES) names and the loop calls.

  gold              P_sft: the question's worked solution (GC = 1), for the SFT entry of the registry. The recipe's
                    SFT stage is the train job's (dsmath.train, packed and resumable); this entry is for the paradigm's
                    ablations (SFT vs RFT vs ... on the same RL task).
  offline_samples   RFT: k samples a question from the initial policy, drawn once; the correct ones, deduplicated.
  offline_pairs     DPO: (correct, incorrect) pairs of those samples; the initial policy is the reference.
The offline dataset is built once before step 0 and written once, atomically, to <run>/offline_data.npz (it never
changes, so checkpoints do not carry it); a resumed run reads it back.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np

from dsmath.data.tokenizer import chat_template_of
from dsmath.files import write_atomic
from dsmath.model.sharding import host_array
from dsmath.rl import tasks as task_lib
from dsmath.rl.experience import Experience
from dsmath.rl.step import RLStep


def gold_experience(rl: RLStep, indices: np.ndarray) -> Experience:
  """Rows of the questions' gold solutions (+ EOS; with task.chat, the chat template's assistant turn of the
  solution). A solution longer than rollout.max_new_tokens is masked out of the batch and counted
  (`gold_too_long`), never truncated."""
  tok, width = rl.tokenizer, rl.rollout.completion_len
  questions = [rl.task.train[i] for i in indices]
  missing = [q.origin for q in questions if not q.solution]
  if missing:
    raise ValueError(f"the SFT entry trains on gold solutions; {missing[0]} has none (task source field "
                     f"`solution_field`)")
  comp = np.full((len(indices), width), tok.pad_id, np.int32)
  mask = np.zeros((len(indices), width), np.float32)
  too_long = 0
  chat = chat_template_of(tok) if rl.task.config.chat else None
  prompts = rl.task.prompts(questions) if chat else [None] * len(questions)
  for r, (q, prompt) in enumerate(zip(questions, prompts)):
    ids = tok.encode(chat.assistant_turn(prompt, q.solution)) if chat else list(tok.encode(q.solution)) + [tok.eos_id]
    if len(ids) > width:
      too_long += 1
      continue
    comp[r, :len(ids)], mask[r, :len(ids)] = ids, 1.0
  tokens, pmask, _, _ = rl.rollout.prompts(indices)
  lengths = mask.sum(1).astype(np.int32)
  batch = {"prompt": rl.reshard_rows(tokens), "prompt_mask": rl.reshard_rows(pmask),
           "completion": rl.to_rows(comp), "mask": rl.to_rows(mask),
           "rewards": rl.to_rows(np.ones((len(indices), 1), np.float32))}
  return Experience(batch=batch, texts=[q.solution for q in questions], question_index=np.asarray(indices),
                    rewards=np.ones(len(indices), np.float32), correct=np.ones(len(indices), np.float32),
                    lengths=lengths, truncated=np.zeros(len(indices), bool),
                    metrics={"gold_too_long": float(too_long)}, sampled=False)


class OfflineData:
  """RFT / DPO data sampled once from the initial policy (Table 10: q ~ P_sft(Q), o ~ pi_sft(O|q))."""

  def __init__(self, rl: RLStep, path):
    self.rl, self.path = rl, path
    self.pairs = rl.run.method.source.pairs
    self.per_batch = rl.cfg.rollout.prompts_per_step  # questions (RFT) or pairs (DPO) a batch
    self.metrics: dict = {}
    self.data: dict = {}

  def load(self) -> None:
    with np.load(self.path, allow_pickle=False) as z:
      self.data = {k: z[k] for k in z.files}

  def build(self, state: dict, seed: int) -> None:
    """Samples k outputs for offline.questions questions (a stream of its own), grades them, keeps the correct
    deduplicated ones (RFT) or (correct, incorrect) pairs (DPO, with the initial policy's log-probs as the
    reference), and writes them to `path`."""
    self.data = self._sample(state, seed)

    def write(tmp):
      with open(tmp, "wb") as f:
        np.savez(f, **self.data)

    write_atomic(self.path, write)

  def _sample(self, state: dict, seed: int) -> dict:
    rl = self.rl
    k = rl.run.samples_per_question
    n = min(len(rl.task.train), rl.cfg.offline.questions or rl.cfg.rl.steps * rl.cfg.rollout.prompts_per_step)
    indices = task_lib.stream_indices(seed + 1, len(rl.task.train), 0, n)
    key = jax.random.fold_in(jax.random.key(seed + 15485863), 0)
    chunks = []
    per_call = 32  # questions a sampler call
    for start in range(0, n, per_call):
      part = indices[start:start + per_call]
      sampled = rl.rollout.sample(state["policy"]["params"], part, jax.random.fold_in(key, start), k)
      texts, tokens, lengths = rl.rollout.texts(sampled)
      rows = sampled.rows
      host = {name: host_array(v) for name, v in rows.items()}
      correct = rl.grade(texts, [rl.task.train[i].answer for i in np.repeat(part, k)]).correct
      if self.pairs:
        with rl.scope():
          host["ref_logp"] = host_array(rl.logprobs(state["policy"]["params"], rows))
      chunks.append((host, texts, correct))
    host = {name: np.concatenate([c[0][name] for c in chunks]) for name in chunks[0][0]}
    texts = [t for c in chunks for t in c[1]]
    correct = np.concatenate([c[2] for c in chunks])
    keep = []
    for q in range(n):
      rows = range(q * k, (q + 1) * k)
      good = [r for r in rows if correct[r] > 0]
      bad = [r for r in rows if correct[r] == 0]
      if self.pairs:
        keep += [(g, b) for g, b in zip(good, bad)]
      else:
        seen = set()
        for r in good:
          if texts[r] not in seen:  # identical outputs of one question count once
            seen.add(texts[r])
            keep.append(r)
    if not keep:
      raise ValueError(f"rl.method={rl.cfg.rl.method!r}: the initial policy produced no usable sample "
                       f"({int(correct.sum())} correct of {len(texts)}); start from a better SFT policy")
    order = np.asarray(keep)
    self.metrics = {"offline_samples": float(len(texts)), "offline_correct": float(correct.sum()),
                    "offline_rows": float(len(keep) * (2 if self.pairs else 1))}
    names = ("prompt", "prompt_mask", "completion", "mask") + (("ref_logp",) if self.pairs else ())
    if self.pairs:
      return {name: np.stack([host[name][order[:, 0]], host[name][order[:, 1]]], axis=1) for name in names}
    return {name: host[name][order] for name in names}

  def batch(self, step: int) -> Experience:
    """The batch of `step`: consecutive rows of the offline dataset, cycling; a short last batch is padded with
    masked rows so every batch has one shape."""
    rl, data = self.rl, self.data
    n = len(data["prompt"])
    size = self.per_batch * (1 if self.pairs else rl.run.samples_per_question)
    idx = (step * size + np.arange(size)) % n
    live = (step * size + np.arange(size)) // n == (step * size) // n  # rows past the end wrap: masked, not reused
    if self.pairs:  # [pairs, 2, ...] -> chosen rows then rejected rows
      rows = {k: np.concatenate([v[idx, 0], v[idx, 1]]) for k, v in data.items()}
      live = np.concatenate([live, live])
    else:
      rows = {k: v[idx] for k, v in data.items()}
    rows["mask"] = rows["mask"] * live[:, None].astype(np.float32)
    batch = {k: rl.to_rows(v) for k, v in rows.items()}
    if not self.pairs:
      batch["rewards"] = rl.to_rows(np.ones((len(idx), 1), np.float32))
    r = len(rows["prompt"])
    exp = Experience(batch=batch, texts=[""] * r, question_index=np.zeros(r, np.int64),
                     rewards=np.ones(r, np.float32), correct=np.ones(r, np.float32),
                     lengths=rows["mask"].sum(1).astype(np.int32), truncated=np.zeros(r, bool), sampled=False)
    return rl.finish(exp)


# ----------------------------------------------------------------------------------------------------------------------
# One step on each kind of data: STEPS[source.step](rl, state, draw, offline, index, t0) -> (state, metrics), where
# draw(n) -> the next n question indices of the run's stream, offline the run's OfflineData (offline sources only) and
# index the step.
# ----------------------------------------------------------------------------------------------------------------------


def _rollout_step(rl: RLStep, state: dict, draw: Callable[[int], np.ndarray], offline: Optional[OfflineData],
                  index: int, t0: float) -> tuple[dict, dict]:
  """Rollouts of the current policy on the next questions (dynamic sampling draws more), rewards, advantages."""
  return rl(state, draw(rl.cfg.rollout.prompts_per_step), refill=draw)


def _gold_step(rl: RLStep, state: dict, draw: Callable[[int], np.ndarray], offline: Optional[OfflineData],
               index: int, t0: float) -> tuple[dict, dict]:
  return rl.train_on(state, rl.finish(gold_experience(rl, draw(rl.cfg.rollout.prompts_per_step))), t0)


def _offline_step(rl: RLStep, state: dict, draw: Callable[[int], np.ndarray], offline: Optional[OfflineData],
                  index: int, t0: float) -> tuple[dict, dict]:
  return rl.train_on(state, offline.batch(index), t0)


STEPS: dict[str, Callable] = {"rollout": _rollout_step, "gold": _gold_step, "offline": _offline_step}
