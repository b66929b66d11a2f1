"""One RL step on the training substrate: rollout -> rewards -> advantages -> mu policy updates.

`RLStep` is built once per run from the resolved config (`dsmath.rl.methods.RLRun`), the policy's model config, the
task and a (data, fsdp, tensor) mesh; `rl_step = RLStep(...)`, then `state, metrics = rl_step(state, questions)` is
the public step a user or a benchmark calls (`questions`: indices into the task's training questions).

Where the data lives: the rollout is `rl_step.rollout` (`dsmath.rl.rollout.RolloutSampler`: the task's prompt arrays
on the device, the KV-cache sampler with continuous or static batching, tool rounds); it returns the completions,
log-probs and masks as device rows (`SampledRows`), and the rewards, advantages and update batch stay on the device
too. Only the completion tokens come to the host, to be decoded for the grader (which grades in worker processes
while the device computes reference log-probs); the rewards go back as one [R] array. Tool-integrated rollouts run
their programs on the host (see dsmath.rl.rollout); their batch holds `context_mask` beside `mask`, and a loss trains
on `mask` only.

The state is a dict pytree of sharded arrays (what the checkpoint saves):
  policy        the policy's train state (dsmath.train: params, opt_state, step, rng, num_skipped)
  ref           the reference params (only when the method's loss reads pi_ref)
  value         the value model's train state (PPO)
  reward_model  the learned reward model's train state (orm / prm rewards)
  rollout_rng   raw key data; step s samples with fold_in(key, s)
  step          RL steps taken
Nothing in this module branches on a method's name: the method's registry entry picks the data source, reward,
estimator and loss.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from dsmath import model
from dsmath.data import synthetic
from dsmath.grading.answers import extract_last_boxed
from dsmath.model import sharding as msharding
from dsmath.rl import advantages as adv_lib
from dsmath.rl import losses, policy, rewards
from dsmath.rl.experience import Experience, attended, concat, rollout_metrics, rollout_records, take_rows
from dsmath.rl.methods import RLRun
from dsmath.rl.rollout import RolloutSampler
from dsmath.rl.tasks import Task
from dsmath.sample import engine
from dsmath.train.optimizer import make_optimizer
from dsmath.train.step import (TrainStep, make_train_step, microbatches, new_state, sharded_abstract_state,
                               unmicrobatch)


def scalar_head_layout(model_cfg: model.ModelConfig, mesh, rules) -> tuple:
  """(abstract params, shardings) of a scalar-head model (value / reward model): the body sharded like the policy,
  the small head replicated."""
  body = model.abstract_params(model_cfg)
  abstract = {"body": body, "head": {"w": jax.ShapeDtypeStruct((model_cfg.hidden_size,), jnp.float32),
                                     "b": jax.ShapeDtypeStruct((), jnp.float32)}}
  rep = msharding.replicated(mesh)
  return abstract, {"body": msharding.param_shardings(model_cfg, mesh, rules), "head": {"w": rep, "b": rep}}


class RLStep:
  """The jitted pieces of one RL run and the step that strings them together (see the module docstring)."""

  def __init__(self, run: RLRun, model_cfg: model.ModelConfig, task: Task, *, mesh=None, rules=None,
               total_updates: int = 1):
    cfg = run.config
    self.run, self.cfg, self.model_cfg, self.task = run, cfg, model_cfg, task
    self.mesh = mesh if mesh is not None else msharding.make_mesh(cfg.mesh.shape)
    self.rules = msharding.rules_from_config(rules if rules is not None else cfg.sharding.rules)
    self.layout = engine.Layout(self.mesh, self.rules)
    self.tokenizer = task.tokenizer
    self.group = run.samples_per_question
    rows = cfg.rollout.prompts_per_step * self.group
    dp = self.layout.dp
    if rows % (dp * cfg.rl.grad_accum_steps) and run.method.source.online:
      raise ValueError(f"a step's {rows} completions (rollout.prompts_per_step x {self.group} samples) do not split "
                       f"into rl.grad_accum_steps={cfg.rl.grad_accum_steps} micro-batches over {dp} data-parallel "
                       f"devices")
    self.rollout = RolloutSampler(cfg.rollout, model_cfg, task, self.layout)  # checks the rollout's widths
    self.estimator = adv_lib.ESTIMATORS[run.estimator] if run.estimator else None
    self.reward = rewards.REWARDS[run.reward] if run.reward else None
    self.optimizer, self.schedule = make_optimizer(cfg.optimizer, max(total_updates, 1))
    temperature, loss_cfg, loss = cfg.rollout.temperature, run.loss, losses.POLICY_LOSSES[run.policy_loss]

    def policy_loss(params, batch, rng):
      m = batch["mask"]
      logp, ent = policy.completion_logprobs(model_cfg, params, batch["prompt"], batch["prompt_mask"],
                                             batch["completion"], attended(batch), temperature)
      value, metrics = loss(loss_cfg, logp * m, batch)
      metrics["entropy"] = (ent * m).sum() / jnp.maximum(m.sum(), 1.0)
      if loss_cfg.aggregation == "token":  # micro-batches weigh by their tokens: the step's loss is the global
        metrics["loss_weight"] = m.sum()    # token mean, however rl.grad_accum_steps splits the batch
      return value, metrics

    accum = cfg.rl.grad_accum_steps
    self.policy = make_train_step(model_cfg, self.optimizer, policy_loss, mesh=self.mesh, rules=self.rules,
                                  grad_accum_steps=accum)
    self.head_layout = scalar_head_layout(model_cfg, self.mesh, self.rules)
    self.value: Optional[TrainStep] = None
    if run.needs_value:
      value_opt, _ = make_optimizer(dataclasses.replace(cfg.optimizer, peak_lr=cfg.ppo.value_lr),
                                    max(total_updates, 1))

      def value_loss(params, batch, rng):
        values = policy.completion_scalars(model_cfg, params, batch["prompt"], batch["prompt_mask"],
                                           batch["completion"], attended(batch), before_token=True)
        return losses.ppo_value_loss(loss_cfg, values, batch)

      self.value_optimizer = value_opt
      self.value = make_train_step(model_cfg, value_opt, value_loss, mesh=self.mesh, rules=self.rules,
                                   grad_accum_steps=accum, params_like=self.head_layout)
    batch_sh = self.policy.batch_sharding
    # Scoring (reference log-probs, values, reward-model scores) runs in the update's micro-batches: at 7B scale a
    # forward over the whole rollout batch at once would not fit beside the states.
    scored = lambda fn, params_sh: jax.jit(_in_microbatches(fn, accum), in_shardings=(params_sh, batch_sh),  # noqa
                                           out_shardings=batch_sh)
    param_sh, head_sh = self.policy.state_shardings["params"], self.head_layout[1]
    self.logprobs = scored(lambda p, b: b["mask"] * policy.completion_logprobs(
        model_cfg, p, b["prompt"], b["prompt_mask"], b["completion"], attended(b), temperature)[0], param_sh)
    self.values = scored(lambda p, b: policy.completion_scalars(model_cfg, p, b["prompt"], b["prompt_mask"],
                                                                 b["completion"], attended(b), before_token=True), head_sh)
    self.reward_scores = scored(lambda p, b: rewards.reward_model_scores(model_cfg, p, b["prompt"], b["prompt_mask"],
                                                                      b["completion"], attended(b),
                                                                      cfg.reward_model.pool), head_sh)
    self.rule = rewards.RuleReward(cfg.rl.grade_mode, cfg.reward.unformatted_reward)
    self.log_rollouts = {"learned": run.needs_reward_model, "on": True, "off": False}[cfg.rollout.log_rollouts]
    self._batch_sh = batch_sh

  # -- layout ---------------------------------------------------------------------------------------------------------

  def scope(self):
    return msharding.activation_rules(self.mesh, self.rules)

  @property
  def data_parallel(self) -> int:
    return self.layout.dp

  def reshard_rows(self, x: jax.Array) -> jax.Array:
    """A device array [R, ...] laid out over the data axes (no host copy)."""
    return self.layout.batch(x)

  def to_rows(self, x) -> jax.Array:
    """A host array [R, ...] (the same on every process) onto the mesh, rows over the data axes."""
    x = np.asarray(x)
    return msharding.global_array(x, NamedSharding(self.mesh, PartitionSpec(self._batch_sh.spec[0],
                                                                            *([None] * (x.ndim - 1)))))

  # -- state ----------------------------------------------------------------------------------------------------------

  def init_state(self, policy_params, seed: int) -> dict:
    """A fresh RL state around the initial policy params (copied; the caller's arrays stay usable)."""
    state = {"policy": new_state(self.policy, self.model_cfg, self.optimizer, seed, params=policy_params)}
    rep = msharding.replicated(self.mesh)
    if self.run.needs_reference:
      state["ref"] = self.copy_params(state["policy"]["params"])
    if self.value is not None:
      state["value"] = self.new_head_state(self.value, self.value_optimizer, state["policy"]["params"], seed + 1)
    state["rollout_rng"] = jax.device_put(jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1)), rep)
    state["step"] = jax.device_put(jnp.zeros((), jnp.int32), rep)
    return state

  def copy_params(self, params):
    sh = self.policy.state_shardings["params"]
    return jax.jit(lambda p: jax.tree.map(jnp.copy, p), in_shardings=(sh,), out_shardings=sh)(params)

  def new_head_state(self, train_step: TrainStep, optimizer, body_params, seed: int) -> dict:
    """A scalar-head model's train state whose body starts from `body_params` (copied into the state) and head
    from `seed`."""
    params = policy.scalar_head_from_policy(body_params, jax.random.key(seed), self.model_cfg.hidden_size)
    with self.scope():
      return new_state(train_step, self.model_cfg, optimizer, seed, params=params)

  def abstract_state(self) -> dict:
    """ShapeDtypeStructs with shardings of `init_state`'s result, allocating nothing (a checkpoint's restore
    target; a reward model's entry is added by its trainer)."""
    params = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                          model.abstract_params(self.model_cfg), self.policy.state_shardings["params"])
    rep = msharding.replicated(self.mesh)
    out = {"policy": sharded_abstract_state(self.policy, self.optimizer, params)}
    if self.run.needs_reference:
      out["ref"] = params
    if self.value is not None:
      out["value"] = sharded_abstract_state(self.value, self.value_optimizer, self.head_layout[0])
    out["rollout_rng"] = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep)
    out["step"] = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
    return out

  # -- grading --------------------------------------------------------------------------------------------------------

  def submit_grading(self, texts: Sequence[str], golds: Sequence[str]) -> "_Grading":
    """Starts the rule grading of `texts` (returns at once). With several processes only process 0 grades and its
    verdicts are broadcast: a wall-clock grading timeout on one host must not make the hosts' rewards differ."""
    lead = jax.process_index() == 0
    return _Grading(self.rule.submit(texts, golds) if lead else None, len(texts))

  def grade(self, texts: Sequence[str], golds: Sequence[str]) -> rewards.Graded:
    return self.submit_grading(texts, golds).result()

  # -- experience -----------------------------------------------------------------------------------------------------

  def online_experience(self, state: dict, indices: np.ndarray, key: jax.Array) -> Experience:
    """Samples G outputs of each question from the current policy and turns them into training rows."""
    t0 = time.perf_counter()
    sampled = self.rollout.sample(state["policy"]["params"], indices, key, self.group)
    texts, tokens, lengths = self.rollout.texts(sampled)
    rows = sampled.rows
    t_rollout = time.perf_counter() - t0
    qidx = np.repeat(np.asarray(indices), self.group)
    metrics = {"rollout_s": t_rollout}
    if self.rollout.tools is not None:  # tokens the model wrote and output-block tokens it read (device scalars,
      metrics["model_tokens_mean"], metrics["tool_tokens_mean"] = _tool_token_means(rows)  # read after the update)
    return self.score(state, rows, texts, tokens, lengths, msharding.host_array(sampled.truncated), qidx,
                      metrics)

  def score(self, state: dict, rows: dict, texts, tokens, lengths, truncated, qidx, metrics) -> Experience:
    """Rewards, reference log-probs, values and advantages of sampled rows (rows stay on the device). Every rollout
    is graded by the rule grader whatever the reward: with a learned reward the verdicts only measure (accuracy,
    the rollout log, over-optimisation), unless reward.verifier_weight mixes them in."""
    t0 = time.perf_counter()
    golds = [self.task.train[i].answer for i in qidx]
    pending = self.submit_grading(texts, golds)  # graded in worker processes while the device works below
    batch = dict(rows)
    with self.scope():
      if self.cfg.rollout.recompute_old_logp:  # pi_old by teacher forcing, as the update computes pi_theta
        batch["old_logp"] = self.logprobs(state["policy"]["params"], rows)
        if self.run.loss.tis != "off":  # the rollout correction weighs pi_old against the sampler's log-probs
          batch["sampler_logp"] = rows["old_logp"]
        metrics["old_logp_gap"] = _mean_abs_gap(batch["old_logp"], rows["old_logp"], rows["mask"])
      if self.run.needs_reference:
        batch["ref_logp"] = self.logprobs(state["ref"], rows)
      if self.value is not None:
        batch["old_values"] = self.values(state["value"]["params"], rows)
      scores = self.reward_scores(state["reward_model"]["params"], rows) if self.run.needs_reward_model else None
    sep = self.cfg.rl.step_separator
    metrics["steps_mean"] = float(np.mean([len(synthetic.split_steps(t, sep)[0]) for t in texts])) if texts else 0.0
    # outputs with no \boxed{} answer: where a policy exploits a learned reward with outputs it never saw (a bare "7}")
    metrics["unformatted_fraction"] = float(np.mean([extract_last_boxed(t) is None for t in texts])) if texts else 0.0
    process = self.reward is not None and self.reward.process
    ends = rewards.step_ends(texts, tokens, lengths, self.tokenizer.decode, sep) if process else None
    graded = pending.result()
    correct = graded.correct
    verifier = self.cfg.reward.verifier_weight * correct  # the rule outcome beside a learned / process reward
    proxy = step_values = None
    if process:
      if scores is None:  # the rule step checker
        questions = [self.task.train[i].question for i in qidx]
        step_values = rewards.step_check_values(texts, questions, ends, sep)
      else:
        host_scores = msharding.host_array(scores)
        step_values = [[float(host_scores[b, e]) for e in row] for b, row in enumerate(ends)]
        proxy = np.array([np.mean(v) for v in step_values], np.float32)
      trained = step_values if scores is None else [
          list(rewards.learned_reward(np.array(v), self.cfg.reward_model.score)) for v in step_values]
      drift = self.cfg.reward.step_drift  # diagnosis: a reward model's drift along a solution, made by hand
      if drift:
        trained = [[v + drift * k for k, v in enumerate(row)] for row in trained]
      placed = [v[:-1] + [v[-1] + w] for v, w in zip(trained, verifier)]  # the verifier term at the last step
      step_r, step_mask = rewards.place_step_values(placed, ends, tokens.shape[1])
      batch["step_rewards"], batch["step_mask"] = self.to_rows(step_r), self.to_rows(step_mask)
    if scores is not None and not process:
      proxy = msharding.host_array(policy.last_token_scalar(scores, rows["mask"])).astype(np.float32)
      reward = rewards.learned_reward(proxy, self.cfg.reward_model.score) + verifier
    elif self.reward is not None and self.reward.fn is not None:
      reward = np.asarray(self.reward.fn(texts, golds, tokens, lengths), np.float32)
    else:
      reward = graded.reward.copy()
    if self.run.overlong_buffer:  # on the tokens the model wrote (max_new_tokens counts those)
      written = lengths if self.rollout.tools is None else \
          msharding.host_array(jnp.sum(rows["mask"], axis=1)).astype(int)
      reward = reward + rewards.overlong_penalty(written, truncated, self.rollout.completion_len, self.run.overlong_buffer,
                                                 self.cfg.reward.overlong_penalty)
    batch["rewards"] = self.to_rows(reward[:, None])
    batch["correct"] = self.to_rows(correct[:, None])
    metrics = {**metrics, "scoring_s": time.perf_counter() - t0, "grading_timeouts": float(graded.timeouts)}
    if "old_logp_gap" in metrics:
      metrics["old_logp_gap"] = float(msharding.host_array(metrics["old_logp_gap"]))
    return Experience(batch=batch, texts=list(texts), question_index=np.asarray(qidx), rewards=reward,
                      correct=np.asarray(correct, np.float32), lengths=lengths, truncated=truncated, metrics=metrics,
                      proxy=proxy, step_scores=step_values)

  def finish(self, exp: Experience) -> Experience:
    """Advantages (the method's estimator) and the update batch: every leaf [R, T] (or [R, 1])."""
    b = dict(exp.batch)
    if self.estimator is not None:
      adv = self._advantages(self.run.estimator, {k: v for k, v in b.items()
                                                  if k in ("rewards", "correct", "mask", "step_rewards", "step_mask",
                                                           "values", "old_logp", "ref_logp", "old_values")})
      b.update(adv)
    metrics = dict(exp.metrics)
    if "step_rewards" in b:  # what the process reward says of the steps; beside accuracy it shows a policy
      # exploiting a learned PRM (this rises while accuracy falls). A device scalar: read after the update.
      metrics["step_reward_mean"] = jnp.sum(b["step_rewards"]) / jnp.maximum(jnp.sum(b["step_mask"]), 1.0)
    if "advantages" in b and "correct" in b and self.group > 1 and exp.rows % self.group == 0:
      # how much of the gradient comes from groups whose outputs the rule grader judges alike: with the rule reward
      # none; with a learned reward, signal the reward model finds where the verdicts see no difference
      metrics["adv_share_unanimous"] = _unanimous_share(b["advantages"], b["correct"], self.group)
    for k in ("rewards", "correct", "step_rewards", "step_mask"):
      b.pop(k, None)
    return dataclasses.replace(exp, batch=b, metrics=metrics)

  @functools.partial(jax.jit, static_argnums=(0, 1))
  def _advantages(self, name, b):
    b = dict(b, rewards=b["rewards"][:, 0], **({"correct": b["correct"][:, 0]} if "correct" in b else {}))
    if "old_values" in b:
      b["values"] = b["old_values"]
    out = adv_lib.ESTIMATORS[name].fn(b, self.group, self.cfg.advantage, self.cfg.ppo)
    if self.cfg.advantage.zero_unanimous_groups:  # diagnosis: only groups the rule grader splits carry signal
      out["advantages"] = out["advantages"] * ~_unanimous_rows(b["correct"], self.group)[:, None]
    return {k: jax.lax.with_sharding_constraint(v, self._batch_sh) for k, v in out.items()}

  def dynamic_sample(self, state: dict, indices: np.ndarray, key: jax.Array,
                     refill: Optional[Callable[[int], np.ndarray]]) -> Experience:
    """DAPO's dynamic sampling: groups whose rewards are all equal carry no signal; they are dropped and the batch
    is refilled with new questions from `refill(n)` (at most rollout.max_refill_batches rounds). A batch still short
    after that is padded with dropped groups whose tokens are masked out (they add nothing to the loss)."""
    want = len(indices)
    kept, dropped, parts, rounds = [], [], [], 0
    exp = self.online_experience(state, indices, key)
    while True:
      parts.append(exp)
      base = sum(p.rows for p in parts[:-1])
      g = exp.rewards.reshape(-1, self.group)
      for q in range(g.shape[0]):
        rows = base + q * self.group + np.arange(self.group)
        (kept if g[q].max() > g[q].min() else dropped).append(rows)
      if len(kept) >= want or refill is None or rounds >= self.cfg.rollout.max_refill_batches:
        break
      rounds += 1
      exp = self.online_experience(state, refill(want), jax.random.fold_in(key, rounds))
    full = concat(parts)
    chosen = kept[:want]
    pad = dropped[:want - len(chosen)]
    out = take_rows(full, np.concatenate(chosen + pad) if chosen + pad else np.arange(0))
    if pad:
      live = np.concatenate([np.ones(len(chosen) * self.group), np.zeros(len(pad) * self.group)]).astype(np.float32)
      out.batch["mask"] = out.batch["mask"] * self.to_rows(live[:, None])
    out.metrics.update(refill_rounds=float(rounds), kept_groups=float(len(chosen)), padded_groups=float(len(pad)),
                       sampled_groups=float(len(kept) + len(dropped)),
                       rollout_s=sum(p.metrics["rollout_s"] for p in parts),
                       scoring_s=sum(p.metrics["scoring_s"] for p in parts),
                       grading_timeouts=sum(p.metrics["grading_timeouts"] for p in parts))
    # what was sampled, before the groups without signal were dropped (the trained batch's own figures are the
    # plain reward_mean / accuracy / ...)
    out.metrics.update({f"sampled_{k}": v for k, v in rollout_metrics(full, self.group).items()})
    return out

  # -- update ---------------------------------------------------------------------------------------------------------

  def update(self, state: dict, exp: Experience) -> tuple[dict, dict]:
    """rl.mu optimizer steps of the policy (and the value model) on one batch; the state is donated."""
    t0 = time.perf_counter()
    batch = {k: v for k, v in exp.batch.items()}
    m = {}
    state = dict(state)
    for _ in range(self.cfg.rl.mu):
      state["policy"], m = self.policy(state["policy"], batch)
      if self.value is not None:
        state["value"], vm = self.value(state["value"], batch)
        m = {**m, **{f"value_{k}": v for k, v in vm.items()}}
    state["step"] = _increment(state["step"])
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    m["update_s"] = time.perf_counter() - t0
    return state, m

  def __call__(self, state: dict, questions: np.ndarray,
               refill: Optional[Callable[[int], np.ndarray]] = None) -> tuple[dict, dict]:
    """One online RL step on the training questions `questions` (indices into task.train): rollout, rewards,
    advantages, rl.mu updates. refill(n) -> n more question indices, for dynamic sampling."""
    t0 = time.perf_counter()
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rollout_rng"]), state["step"])
    questions = np.asarray(questions)
    if self.run.dynamic_sampling:
      exp = self.dynamic_sample(state, questions, key, refill)
    else:
      exp = self.online_experience(state, questions, key)
    return self.train_on(state, self.finish(exp), t0)

  def train_on(self, state: dict, exp: Experience, t0: Optional[float] = None) -> tuple[dict, dict]:
    t0 = time.perf_counter() if t0 is None else t0
    state, m = self.update(state, exp)
    late = {k: float(msharding.host_array(v)) for k, v in exp.metrics.items() if isinstance(v, jax.Array)}
    metrics = {**exp.metrics, **late, **m, **rollout_metrics(exp, self.group)}
    if self.log_rollouts and exp.sampled:  # per-rollout records (not a scalar: the loop writes them apart)
      adv = exp.batch.get("advantages")
      metrics["rollouts"] = rollout_records(exp, None if adv is None else msharding.host_array(
          _row_advantages(adv, exp.batch["mask"])))
    metrics["step_s"] = time.perf_counter() - t0
    metrics["tokens_per_s"] = float(np.sum(exp.lengths)) * self.cfg.rl.mu / max(metrics["step_s"], 1e-9)
    metrics["learning_rate"] = float(self.schedule(int(jax.device_get(state["policy"]["step"])) - 1))
    return state, metrics

  def close(self):
    self.rule.close()


class _Grading:
  """A pending grading; `result()` -> rewards.Graded, the same on every process."""

  def __init__(self, future, n: int):
    self.future, self.n = future, n

  def result(self) -> rewards.Graded:
    local = self.future.result() if self.future is not None else None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils
    packed = np.zeros((3, self.n), np.float32)
    if local is not None:
      packed[0], packed[1], packed[2, 0] = local.correct, local.reward, local.timeouts
    packed = np.asarray(multihost_utils.broadcast_one_to_all(packed))
    return rewards.Graded(correct=packed[0], reward=packed[1], timeouts=int(packed[2, 0]))


_increment = jax.jit(lambda x: x + 1)  # on the device: no host scalar crosses over


@jax.jit
def _row_advantages(advantages, mask):
  """[R, 2]: each row's mean advantage over its tokens and its sum of |A|."""
  m = mask.astype(jnp.float32)
  return jnp.stack([(advantages * m).sum(1) / jnp.maximum(m.sum(1), 1.0), jnp.abs(advantages * m).sum(1)], axis=1)


def _unanimous_rows(correct, group: int):
  """[R] bool: the row's group (G consecutive rows) has rule verdicts that all agree. correct: [R] or [R, 1]."""
  c = correct.reshape(-1, group)
  return jnp.repeat(c.max(axis=1) == c.min(axis=1), group)


@functools.partial(jax.jit, static_argnums=(2,))
def _unanimous_share(advantages, correct, group: int):
  """Share of sum |A| over a batch's tokens that falls in groups whose rule verdicts all agree."""
  unanimous = _unanimous_rows(correct, group)
  per_row = jnp.abs(advantages).sum(axis=1)
  return jnp.sum(jnp.where(unanimous, per_row, 0.0)) / jnp.maximum(per_row.sum(), 1e-30)


@jax.jit
def _tool_token_means(rows: dict) -> tuple[jax.Array, jax.Array]:
  return jnp.mean(jnp.sum(rows["mask"], axis=1)), jnp.mean(jnp.sum(rows["context_mask"] - rows["mask"], axis=1))


@jax.jit
def _mean_abs_gap(a, b, mask):
  """Mean |a - b| over completion tokens: how far the sampler's log-probs are from teacher forcing's."""
  return (jnp.abs(a - b) * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def _in_microbatches(fn: Callable, n: int) -> Callable:
  """fn(params, rows) -> [R, ...] run over n micro-batches of the rows in turn (lax.map), rows in their order."""
  if n == 1:
    return fn

  def run(params, rows):
    out = jax.lax.map(lambda mb: fn(params, mb), microbatches(rows, n))
    return jax.tree.map(unmicrobatch, out)

  return run
