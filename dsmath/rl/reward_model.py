"""Learned reward models for RL: an outcome (ORM) or process (PRM) reward model, a scalar head on a transformer body
sharded like the policy, trained in rounds on the current policy's samples (Math-Shepherd labels for the PRM) plus a
replay of earlier rounds' rows (iterative RL, paper sec. 4.1.4: 10% historical data).

A round is a pure function of (state, replay rows, round index, seed): its questions, samples, label completions and
minibatches are all drawn from keys of that round, so a resumed run repeats it exactly.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.config import ConfigError
from dsmath.holds import hold_point

from dsmath.model.sharding import host_array
from dsmath.runs import load_run
from dsmath.rl import corruptions, rewards, sources
from dsmath.rl.step import RLStep
from dsmath.sample import engine
from dsmath.sample.strategies import Temperature
from dsmath.train.loop import progress_bar
from dsmath.train.optimizer import make_optimizer
from dsmath.train.step import make_train_step, sharded_abstract_state

REPLAY_KEYS = ("prompt", "prompt_mask", "completion", "mask", "label", "step_label", "step_mask", "question")


class RewardModelTrainer:
  """Trains `state["reward_model"]` for an RLStep whose reward is "orm" or "prm"."""

  def __init__(self, rl: RLStep, rounds: int):
    self.rl, self.kind = rl, rl.run.reward
    self.cfg = rl.cfg.reward_model
    # trained on the answer's label at the last token (an ORM; a PRM with label "outcome"), or on step labels
    self.outcome = self.kind == "orm" or self.cfg.label == "outcome"
    self.optimizer, _ = make_optimizer(dataclasses.replace(rl.cfg.optimizer, peak_lr=self.cfg.lr),
                                       max(self.cfg.steps * rounds, 1))
    loss = rewards.reward_model_loss(rl.model_cfg, "orm" if self.outcome else "prm", self.cfg.pairwise_weight,
                                     self.cfg.pool)
    self.step = make_train_step(rl.model_cfg, self.optimizer, loss, mesh=rl.mesh, rules=rl.rules,
                                params_like=rl.head_layout)
    if self.cfg.batch % rl.data_parallel:
      raise ValueError(f"reward_model.batch={self.cfg.batch} does not split over {rl.data_parallel} data-parallel "
                       "devices")
    if self.cfg.pairwise_weight and self.cfg.batch % self.cfg.samples_per_question:
      raise ValueError(f"reward_model.batch={self.cfg.batch} is not a whole number of questions of "
                       f"reward_model.samples_per_question={self.cfg.samples_per_question} rows (pairwise_weight > 0 "
                       "trains on whole questions)")

  def init_state(self, policy_params, seed: int) -> dict:
    """The reward model's first state: its body from reward_model.init_from's params (e.g. the pre-trained model
    before SFT), or a copy of the policy's; a fresh head."""
    body = policy_params
    if self.cfg.init_from:
      parent = load_run(self.body_run())
      if parent.model != self.rl.model_cfg:
        raise ConfigError(f"config.reward_model.init_from={self.cfg.init_from!r}: its model differs from the policy's "
                          f"({parent.model} vs {self.rl.model_cfg}); the reward model shares the policy's shapes")
      body = parent.load_params(jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                             model.abstract_params(self.rl.model_cfg),
                                             self.rl.policy.state_shardings["params"]))
    return self.rl.new_head_state(self.step, self.optimizer, body, seed + 2)

  def body_run(self) -> str:
    """The run whose params the reward model's body starts from (reward_model.init_from, set): "base" = the run the
    policy's init_from run started from (the pre-trained model an SFT policy was fine-tuned from)."""
    if self.cfg.init_from != "base":
      return os.fspath(load_run(self.cfg.init_from).path)
    policy_run = self.rl.cfg.init_from
    parents = load_run(policy_run).parents if policy_run else ()
    if not parents:
      raise ConfigError(f"config.reward_model.init_from='base' names the run the policy's init_from started from, but "
                        f"config.init_from={policy_run!r} has no parent run")
    return parents[0]

  def abstract_state(self) -> dict:
    return sharded_abstract_state(self.step, self.optimizer, self.rl.head_layout[0])

  # -- labelled rows of one round ------------------------------------------------------------------------------------

  COMPLETE_CHUNK = 64  # (prompt, prefix) pairs per sampler call

  def _complete(self, params, prompt_rows: list[list[int]], prefix_tokens: list[list[int]], n: int,
                key: jax.Array) -> list[list[str]]:
    """n sampled continuations of each (prompt, completion prefix): texts of prefix + continuation, each within the
    budget the policy had (rollout.max_new_tokens in all, the prefix included), as the policy would have finished.
    Prefixes go in order of length, COMPLETE_CHUNK to a sampler call; each row stops at its own budget (per-row
    budgets), so the calls share their shapes (the chunk padded with one-token rows, max_new_tokens the budgets' power
    of two bucket): one compiled program for all the chunks of a round and the rounds after, not one per chunk size and
    budget."""
    tok, rl = self.rl.tokenizer, self.rl
    size, width = self.COMPLETE_CHUNK, rl.rollout.completion_len
    order = sorted(range(len(prefix_tokens)), key=lambda i: len(prefix_tokens[i]))
    out: list = [None] * len(order)
    for start in range(0, len(order), size):
      chunk = order[start:start + size]
      rooms = [width - len(prefix_tokens[i]) for i in chunk]  # the shortest prefix first: the largest budget first
      if rooms[0] < 1:  # every prefix of the chunk fills the whole budget: nothing can follow
        for i in chunk:
          out[i] = [tok.decode(prefix_tokens[i])] * n
        continue
      rows = [prompt_rows[i] + prefix_tokens[i] for i in chunk]
      budgets = [max(r, 1) for r in rooms] + [1] * (size - len(chunk))  # padding rows: one token, dropped
      rows += [rows[-1]] * (size - len(chunk))
      # the largest budget's bucket, within the model's positions (as far as the largest budget allows)
      max_new = max(rooms[0], min(engine.bucket_length(rooms[0]), width,
                                  rl.model_cfg.max_positions - max(len(r) for r in rows)))
      res = engine.generate(rl.model_cfg, params, rows, max_new_tokens=max_new, budgets=np.repeat(budgets, n),
                            strategy=Temperature(rl.rollout.temperature), num_samples=n, eos_id=tok.stop_ids,
                            tokenizer=tok, rng=key, pad_id=tok.pad_id, mesh=rl.mesh, rules=rl.rules,
                            row_offset=start * n)
      for j, (i, room) in enumerate(zip(chunk, rooms)):
        out[i] = [tok.decode(prefix_tokens[i] + res.tokens[j * n + s, :min(res.lengths[j * n + s], room)].tolist())
                  for s in range(n)]
    return out

  def _questions(self, round_index: int, seed: int) -> dict[str, np.ndarray]:
    """A round's questions by split, disjoint draws from the task's training questions: "train", "heldout" (measures
    the trained model) and, with select_every, "select" (chooses among the round's states)."""
    cfg, n_all = self.cfg, len(self.rl.task.train)
    h = min(cfg.heldout_questions or cfg.questions, n_all // 2)  # at most half the questions held out
    n = min(cfg.questions, n_all - h)
    order = np.random.default_rng([seed, 7, round_index]).permutation(n_all)
    out = {"train": order[:n], "heldout": order[n:n + h]}
    if cfg.select_every:
      if n + h + cfg.select_questions > n_all:
        raise ConfigError(f"config.reward_model.select_questions={cfg.select_questions}: the task has {n_all} training "
                          f"questions and the round already draws {n} to train on and {h} held out")
      out["select"] = order[n + h:n + h + cfg.select_questions]
    return {k: np.sort(v) for k, v in out.items()}

  def new_rows(self, state: dict, round_index: int, seed: int, split: str = "train") -> tuple[dict, dict]:
    """Rows sampled from the current policy, labelled by the rule reward, and a PRM's steps (unless its label is
    "outcome") by Math-Shepherd. split: "train",
    or rows of questions the round does not train on ("heldout": to measure the reward model; "select": to choose
    among its states)."""
    rl, cfg = self.rl, self.cfg
    indices = self._questions(round_index, seed)[split]
    key = jax.random.fold_in(jax.random.key(seed + 104729 + ("train", "heldout", "select").index(split)), round_index)
    params = state["policy"]["params"]
    sampled = rl.rollout.sample(params, indices, jax.random.fold_in(key, 0), cfg.samples_per_question)
    texts, tokens, lengths = rl.rollout.texts(sampled)
    rows = sampled.rows
    qidx = np.repeat(indices, cfg.samples_per_question)
    golds = [rl.task.train[i].answer for i in qidx]
    correct = rl.grade(texts, golds).correct
    host = {k: host_array(rows[k]) for k in ("prompt", "prompt_mask", "mask")}
    host["completion"] = tokens
    metrics = {"rows_new": float(len(texts)), "label_mean": float(correct.mean())}
    if split == "train" and cfg.corrupted_fraction > 0:  # outputs the policy can drift to, graded like the rest
      extra = self._corrupted_rows(texts, tokens, lengths, round_index, seed)
      extra_golds = [golds[r] for r in extra["source"]]
      verdicts = rl.grade(extra["texts"], extra_golds).correct
      texts, golds = texts + extra["texts"], golds + extra_golds
      tokens, lengths = np.concatenate([tokens, extra["completion"]]), np.concatenate([lengths, extra["lengths"]])
      host = {**{k: np.concatenate([host[k], host[k][extra["source"]]]) for k in ("prompt", "prompt_mask")},
              "mask": np.concatenate([host["mask"], extra["mask"]]), "completion": tokens}
      correct, qidx = np.concatenate([correct, verdicts]), np.concatenate([qidx, qidx[extra["source"]]])
      metrics.update(rows_corrupted=float(len(extra["texts"])),
                     corrupted_label_mean=float(verdicts.mean()) if len(verdicts) else 0.0,
                     **{f"rows_corrupted_{k}": float(extra["kinds"].count(k)) for k in cfg.corruptions})
    if split == "train" and cfg.gold_solutions:  # each question's worked solution, labelled right (every step good)
      gold = sources.gold_experience(rl, indices)
      keep = np.flatnonzero(gold.lengths > 0)  # a solution longer than the policy's budget is left out (counted)
      g = {k: host_array(gold.batch[k])[keep] for k in ("prompt", "prompt_mask", "completion", "mask")}
      texts = texts + [gold.texts[i] for i in keep]
      tokens, lengths = np.concatenate([tokens, g["completion"]]), np.concatenate([lengths, gold.lengths[keep]])
      host = {**{k: np.concatenate([host[k], g[k]]) for k in ("prompt", "prompt_mask", "mask")}, "completion": tokens}
      correct = np.concatenate([correct, np.ones(len(keep), np.float32)])
      qidx = np.concatenate([qidx, indices[keep]])
      metrics.update(rows_gold=float(len(keep)), gold_too_long=gold.metrics["gold_too_long"])
    n_sampled = len(golds)
    width = tokens.shape[1]
    out = {**host, "label": correct[:, None].astype(np.float32), "question": qidx[:, None].astype(np.int32),
           "step_label": np.zeros((len(texts), width), np.float32), "step_mask": np.zeros((len(texts), width),
                                                                                          np.float32)}
    if not self.outcome:
      ends = rewards.step_ends(texts, tokens, lengths, rl.tokenizer.decode, rl.cfg.rl.step_separator)
      prompt_rows = [[int(t) for t, m in zip(p, pm) if m > 0] for p, pm in zip(host["prompt"], host["prompt_mask"])]

      def complete(prefixes, k):
        return self._complete(params, [prompt_rows[r] for r, _ in prefixes],
                              [tokens[r, :e + 1].tolist() for r, e in prefixes], k, jax.random.fold_in(key, 1))

      # Math-Shepherd labels for the samples; a gold solution's steps are right by construction
      labels = rewards.math_shepherd_labels(ends[:n_sampled], golds, complete, cfg.shepherd_completions,
                                            texts[:n_sampled], lambda t, g: rl.grade(t, g).correct)
      vals = [list(lab.soft if cfg.label == "soft" else lab.hard) for lab in labels]
      vals += [[1.0] * len(e) for e in ends[n_sampled:]]
      out["step_label"], out["step_mask"] = rewards.place_step_values(vals, ends, width)
      metrics["step_label_mean"] = float(np.sum(out["step_label"]) / max(np.sum(out["step_mask"]), 1.0))
    return out, metrics

  def _corrupted_rows(self, texts: list[str], tokens: np.ndarray, lengths: np.ndarray, round_index: int,
                      seed: int) -> dict:
    """Corrupted copies of some of a round's sampled rows (dsmath.rl.corruptions), drawn from keys of the round:
    "source" (the sampled row each copies), "completion" [n, width] and "mask" (its tokens, padded), "lengths",
    "texts", "kinds"."""
    rl, cfg = self.rl, self.cfg
    ends = rewards.step_ends(texts, tokens, lengths, rl.tokenizer.decode, rl.cfg.rl.step_separator)
    source, new, kinds = corruptions.corrupt(tokens, lengths, ends, cfg.corrupted_fraction, cfg.corruptions,
                                             rl.tokenizer.eos_id, np.random.default_rng([seed, 10, round_index]))
    comp = np.full((len(new), tokens.shape[1]), rl.tokenizer.pad_id, tokens.dtype)
    mask = np.zeros(comp.shape, np.float32)
    for i, t in enumerate(new):
      comp[i, :len(t)], mask[i, :len(t)] = t, 1.0
    return {"source": source, "completion": comp, "mask": mask, "lengths": np.asarray([len(t) for t in new], np.int32),
            "texts": [rl.tokenizer.decode(t) for t in new], "kinds": kinds}

  # -- a round --------------------------------------------------------------------------------------------------------

  def train_round(self, state: dict, replay: dict, round_index: int, seed: int) -> tuple[dict, dict, dict]:
    """(state with the reward model trained, replay with this round's rows appended, metrics)."""
    cfg = self.cfg
    new, metrics = self.new_rows(state, round_index, seed)
    data, n_replay = new, 0
    if replay and cfg.replay_fraction > 0:
      n_old = len(replay["prompt"])
      # n_replay / (n_new + n_replay) = replay_fraction
      n_replay = max(1, int(round(cfg.replay_fraction * len(new["prompt"]) / (1 - cfg.replay_fraction))))
      keep = np.random.default_rng([seed, 8, round_index]).choice(n_old, n_replay, replace=n_replay > n_old)
      data = {k: np.concatenate([new[k], replay[k][keep]]) for k in new}
    n = len(data["prompt"])
    rm = state["reward_model"]
    m = {}
    select = self.new_rows(state, round_index, seed, split="select")[0] if cfg.select_every else None
    best, curve = (-np.inf, rm, 0), []
    bar = progress_bar(cfg.steps, 0, self.rl.cfg.progress, desc=f"reward model round {round_index}")
    keys = ("prompt", "prompt_mask", "completion", "mask") + (("label",) if self.outcome else (
        "step_label", "step_mask")) + (("question",) if cfg.pairwise_weight else ())
    for s in range(cfg.steps):
      idx = self._batch_rows(data["question"][:, 0], np.random.default_rng([seed, 9, round_index, s]))
      rm, m = self.step(rm, {k: self.rl.to_rows(data[k][idx]) for k in keys})
      bar.update(1)
      if s == cfg.steps // 2:
        hold_point("reward_model_round", round_index)
      if select is not None and ((s + 1) % cfg.select_every == 0 or s + 1 == cfg.steps):
        pair = self.label_accuracy(rm["params"], select)[1]
        curve.append(pair)
        if pair >= best[0]:  # a later state wins ties; nan (no pairs to order) never does
          best = (pair, jax.tree.map(jnp.copy, rm) if s + 1 < cfg.steps else rm, s + 1)
    bar.close()
    last = rm
    if select is not None:
      rm = best[1] if best[2] else rm  # no state ordered a pair: the last
      metrics.update(selected_step=float(best[2]), select_pair_accuracy=float(best[0]),
                     select_pair_accuracy_last=float(curve[-1]))
    state = dict(state, reward_model=rm)
    replay = {k: np.concatenate([replay[k], new[k]]) for k in new} if replay else dict(new)
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    metrics.update(m, rows_replay=float(n_replay), replay_share=n_replay / n, round=float(round_index))
    # How well the trained model reads labels of samples it was not trained on (fresh questions, same policy): the
    # step labels for a PRM, the answer labels for an ORM.
    held_out, _ = self.new_rows(state, round_index, seed, split="heldout")
    metrics["heldout_label_accuracy"], metrics["heldout_pair_accuracy"] = self.label_accuracy(rm["params"], held_out)
    if select is not None:  # what selection bought, on questions neither the training nor the selection saw
      metrics["heldout_label_accuracy_last"], metrics["heldout_pair_accuracy_last"] = (
          self.label_accuracy(last["params"], held_out) if last is not rm else
          (metrics["heldout_label_accuracy"], metrics["heldout_pair_accuracy"]))
    return state, replay, {f"rm_{k}" if not k.startswith("rm_") else k: v for k, v in metrics.items()}

  def _batch_rows(self, question: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """reward_model.batch row indices: random rows, or (pairwise_weight > 0) whole questions, samples_per_question
    rows each (the rows of a question drawn from all it has, this round's and the replay's), so a batch holds pairs
    to rank."""
    cfg, n = self.cfg, len(question)
    if not cfg.pairwise_weight:
      return rng.choice(n, cfg.batch, replace=n < cfg.batch)
    ids, inverse = np.unique(question, return_inverse=True)
    per_q = cfg.samples_per_question
    chosen = rng.choice(len(ids), cfg.batch // per_q, replace=len(ids) < cfg.batch // per_q)
    rows = [np.flatnonzero(inverse == q) for q in chosen]
    return np.concatenate([rng.choice(r, per_q, replace=len(r) < per_q) for r in rows])

  def label_accuracy(self, params, rows: dict) -> tuple[float, float]:
    """(label accuracy, pair accuracy) of the model on `rows`: agreement of its scores (> 0.5) with the labels
    (> 0.5), per step for a PRM on step labels (at step ends), per completion (its last token) for a model trained on
    the answer's label; and the fraction of pairs
    of outputs of one question with different labels (a PRM: of their k-th steps) that the scores order right, what
    GRPO's group comparison reads (nan where no question has such a pair)."""
    rl = self.rl
    batch = {k: rl.to_rows(rows[k]) for k in ("prompt", "prompt_mask", "completion", "mask")}
    with rl.scope():
      scores = host_array(rl.reward_scores(params, batch))
    if not self.outcome:
      right = ((scores > 0.5) == (rows["step_label"] > 0.5)) * rows["step_mask"]
      accuracy = float(right.sum() / max(rows["step_mask"].sum(), 1.0))
      z, has = (np.asarray(a) for a in rewards.per_step_values(scores, rows["step_mask"]))
      y = np.asarray(rewards.per_step_values(rows["step_label"], rows["step_mask"])[0])
    else:
      last = np.maximum(rows["mask"].sum(1).astype(np.int64) - 1, 0)
      z, y = scores[np.arange(len(last)), last], rows["label"][:, 0]
      accuracy = float(np.mean((z > 0.5) == (y > 0.5)))
      has = np.ones_like(z)
    return accuracy, rewards.pair_accuracy(z, y, has, rows["question"][:, 0])
