"""The RL stage, built like dsmath.train.loop: config resolved once, typed objects flowing down, sharded donated
states on the (data, fsdp, tensor) mesh, orbax checkpoints, exact resume. `run(config, workdir) -> dict`.

Iterative RL (Algorithm 1): for each of rl.iterations, pi_ref <- pi_theta and (with a learned reward) a reward-model
round on the current policy's samples plus a replay of earlier rounds; then rl.steps steps, each drawing
rollout.prompts_per_step questions from the stream, G outputs each, rewards, advantages and rl.mu updates.

Run directory:
  <workdir>/checkpoints/<step>/   everything the run needs (dsmath.rl.checkpoint); a re-run of the same command
                                  resumes from the latest one and writes the same per-step metrics as an
                                  uninterrupted run. Checkpoints are taken at step boundaries (every
                                  checkpoint.every steps, at each iteration's end, at the end), each holding the state
                                  ready for the next step.
  <workdir>/metrics.jsonl         one row per step (reward, accuracy, loss, KL, entropy, timings...), rows of held-out
                                  evaluations (`test_accuracy_greedy`, `test_accuracy_sampled`) and reward-model rounds
                                  (`rm_*`); TensorBoard events in <workdir>/tb
  <workdir>/run.json              written once at the end (dsmath.runs): the policy for later stages
  <workdir>/summary.json          written by dsmath.jobs
Ctrl-C finishes the step, saves a checkpoint and stops with status "interrupted".
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time

import jax
import numpy as np
from etils import epath

from dsmath import model, sample
from dsmath.config import ConfigError
from dsmath.eval.evaluate import evaluate
from dsmath.report import read_jsonl, write_rl_report
from dsmath.rl import overoptimisation
from dsmath.rl import tasks as task_lib
from dsmath.rl.checkpoint import rl_checkpointer
from dsmath.rl.methods import RLRun, resolve_rl_config
from dsmath.rl.reward_model import RewardModelTrainer
from dsmath.rl.rollout_log import RolloutLog
from dsmath.rl.sources import STEPS, OfflineData, gold_experience
from dsmath.rl.step import RLStep
from dsmath.runs import load_run, write_run
from dsmath.train import distributed
from dsmath.train.loop import Interrupt, progress_bar
from dsmath.train.metrics import MetricWriter

log = logging.getLogger(__name__)
# per-step metrics whose first- and last-window means the summary keeps (tables of sweeps read them)
WINDOW_METRICS = ("reward_mean", "accuracy", "proxy_reward_mean", "step_reward_mean", "kl_ref", "entropy",
                  "adv_share_unanimous", "steps_mean", "unformatted_fraction", "completion_len_mean",
                  "zero_std_group_fraction")
EVAL_KEY_OFFSET = 7919  # held-out sampling keys: fold_in(key(seed + this), step), never the training stream's


@dataclasses.dataclass
class HostState:
  """What the checkpoint keeps besides device arrays."""
  step: int = 0
  position: int = 0  # questions drawn from the stream
  prepared_iteration: int = -1  # iterations whose start (pi_ref reset, reward-model round) is done
  metric_rows: int = 0  # rows of metrics.jsonl at this checkpoint (a resume truncates to it)
  rm_rounds: int = 0
  consecutive_nonfinite: int = 0
  eval_before: dict = dataclasses.field(default_factory=dict)
  rm_history: list = dataclasses.field(default_factory=list)  # each reward-model round's metrics
  proxy_trace: list = dataclasses.field(default_factory=list)  # [step, learned reward, rule accuracy] per step
  warned_spans: list = dataclasses.field(default_factory=list)  # first steps of over-optimisation spans warned of


def _policy_source(cfg, workdir):
  """(model config, initial params or None, tokenizer, tokenizer ref, parent runs) of the run's policy."""
  if cfg.init_from:
    parent = load_run(cfg.init_from)
    if cfg.model not in (model.ModelConfig.preset("tiny"), parent.model):  # the default, or the parent's own
      raise ConfigError(f"config.model is set, but the model comes from config.init_from={cfg.init_from!r} (its "
                        "run.json); leave config.model at its default")
    return parent.model, parent, parent.load_tokenizer(), dict(parent.tokenizer), (parent.path,)
  tokenizer, path = task_lib.tokenizer_for(cfg.task, cfg.seed, str(workdir))
  if cfg.model.vocab_size < tokenizer.vocab_size:
    raise ConfigError(f"config.model.vocab_size={cfg.model.vocab_size} < the tokenizer's {tokenizer.vocab_size} "
                      f"({path})")
  return cfg.model, None, tokenizer, {"kind": "sentencepiece", "path": path}, ()


class HeldOut:
  """Held-out accuracy on the task's test split through dsmath.eval, for each question source apart (GSM8K and MATH
  are separate benchmarks to the evaluation: their own prompts and few-shot exemplars) on its first
  eval.num_questions test questions: greedy, and sampled at eval.temperature (eval.samples per question). Metrics:
  test_accuracy_{greedy,sampled} over all of them, and test_accuracy_{kind}/<source> per source when there are
  several; per-question verdicts are kept for paired intervals."""

  def __init__(self, rl: RLStep, seed: int):
    self.rl, self.seed = rl, seed
    self.cfg = rl.cfg.eval
    by_source: dict = {}
    for q in rl.task.test:
      by_source.setdefault(q.source, []).append(q)
    self.sources = {name: rl.task.records(qs[:self.cfg.num_questions]) for name, qs in by_source.items()}

  def __call__(self, params, step: int) -> dict:
    if not self.sources:
      return {}
    rl, out = self.rl, {}
    # evaluated as it was trained: tools run, chat template
    common = dict(max_new_tokens=rl.rollout.completion_len, batch_rows=self.cfg.batch_rows, mesh=rl.mesh, rules=rl.rules,
                  tools=rl.rollout.tools, chat=rl.cfg.task.chat)
    runs = []
    if self.cfg.greedy:
      runs.append(("greedy", sample.Greedy(), 1))
    if self.cfg.samples:
      runs.append(("sampled", sample.Temperature(self.cfg.temperature), self.cfg.samples))
    for name, strategy, n in runs:
      per_q = []
      for i, (source, records) in enumerate(sorted(self.sources.items())):
        key = jax.random.fold_in(jax.random.key(self.seed + EVAL_KEY_OFFSET), step)
        key = jax.random.fold_in(key, i) if i else key  # sources after the first: keys of their own
        gen = sample.text_generator(rl.model_cfg, params, rl.tokenizer, strategy=strategy, rng=key, **common)
        res = evaluate(records, gen, prompt_style=rl.cfg.task.prompt, k_values=[1], num_samples=n,
                       grading_mode=rl.cfg.rl.grade_mode, grader=rl.rule.grader, bootstrap_resamples=200,
                       num_shots=rl.cfg.task.num_shots)
        source_q = [float(np.mean([s["correct"] for s in q["samples"]])) for q in res["samples"]]
        if len(self.sources) > 1:
          out[f"test_accuracy_{name}/{source}"] = float(np.mean(source_q))
        per_q += source_q
      out[f"test_accuracy_{name}"] = float(np.mean(per_q))
      out[f"_per_question_{name}"] = per_q
    return out


def paired_gain(before, after) -> dict:
  """Mean gain after - before over the same questions with a 95% Student-t interval of the paired differences."""
  d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
  if d.size < 2:
    return {"gain": float(d.mean()) if d.size else float("nan")}
  from scipy import stats
  half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
  return {"gain": float(d.mean()), "gain_ci95": [float(d.mean()) - half, float(d.mean()) + half], "n": int(d.size)}


class RLLoop:
  """Drives an RLStep over iterations and steps with checkpoints, evaluation and metrics (see the module docstring)."""

  def __init__(self, run: RLRun, workdir):
    self.workdir = epath.Path(workdir)
    self.model_cfg, self.parent, tokenizer, self.tokenizer_ref, self.parents = _policy_source(run.config, self.workdir)
    # The recorded config (summary, run.json) names the model that ran: init_from's, not the schema's default.
    run = dataclasses.replace(run, config=dataclasses.replace(run.config, model=self.model_cfg))
    cfg = run.config
    self.run, self.cfg = run, cfg
    self.task = task_lib.build_task(cfg.task, tokenizer, cfg.seed)
    bad = self.task.bad_rows
    if bad["total"]:  # left out, never silently: counted by reason in the summary, located here and there
      log.warning("task: %d bad rows left out (%s); first: %s", bad["total"], bad["counts"],
                  "; ".join(bad["examples"][:5]))
    self.total = cfg.rl.iterations * cfg.rl.steps
    self.rl = RLStep(run, self.model_cfg, self.task, total_updates=self.total * cfg.rl.mu)
    self.rm = RewardModelTrainer(self.rl, cfg.rl.iterations) if run.needs_reward_model else None
    if self.rm is not None and cfg.reward_model.init_from:  # the reward model's body came from that run
      self.parents = self.parents + (self.rm.body_run(),)
    self.offline = OfflineData(self.rl, str(self.workdir / "offline_data.npz")) if run.method.source.offline else None
    self.held_out = HeldOut(self.rl, cfg.seed) if cfg.eval.num_questions else None
    self.checkpointer = rl_checkpointer(self.workdir / "checkpoints", keep=cfg.checkpoint.keep,
                                        async_save=cfg.checkpoint.async_save)
    self.last_heldout: dict = {}

  # -- state ----------------------------------------------------------------------------------------------------------

  def _initial_params(self) -> dict:
    """The policy RL starts from: init_from's params, or a fresh init (after rl.sft_warmup_steps of SFT)."""
    sh = self.rl.policy.state_shardings["params"]
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          model.abstract_params(self.model_cfg), sh)
    if self.parent is not None:
      return self.parent.load_params(target)
    with self.rl.scope():
      params = jax.jit(model.init_params, static_argnums=0, out_shardings=sh)(self.model_cfg,
                                                                              jax.random.key(self.cfg.seed))
    return self._warmup(params) if self.cfg.rl.sft_warmup_steps else params

  def _warmup(self, params) -> dict:
    """rl.sft_warmup_steps of the paradigm's SFT entry (gold solutions, lr rl.sft_lr, rl.sft_batch questions a step):
    a policy that solves some questions, for toy runs that start from nothing."""
    cfg = self.cfg
    n, batch = cfg.rl.sft_warmup_steps, cfg.rl.sft_batch
    warm = dataclasses.replace(
        cfg, rl=dataclasses.replace(cfg.rl, method="sft", reward="", estimator="", policy_loss="", iterations=1,
                                    steps=n, mu=1),
        rollout=dataclasses.replace(cfg.rollout, prompts_per_step=batch, dynamic_sampling="off"),
        reward=dataclasses.replace(cfg.reward, overlong_buffer=0),
        optimizer=dataclasses.replace(cfg.optimizer, peak_lr=cfg.rl.sft_lr, schedule="constant", warmup_steps=0))
    step = RLStep(resolve_rl_config(warm), self.model_cfg, self.task, mesh=self.rl.mesh, rules=self.rl.rules,
                  total_updates=n)
    try:
      state = step.init_state(params, cfg.seed)
      for s in range(n):
        indices = task_lib.stream_indices(cfg.seed + 2, len(self.task.train), s * batch, batch)
        state, m = step.train_on(state, step.finish(gold_experience(step, indices)))
      self.warmup_metrics = {"sft_warmup_steps": float(n), "sft_warmup_loss": m["loss"]}
      return state["policy"]["params"]
    finally:
      step.close()

  def _fresh_state(self, params) -> dict:
    state = self.rl.init_state(params, self.cfg.seed)
    if self.rm is not None:
      state["reward_model"] = self.rm.init_state(state["policy"]["params"], self.cfg.seed)
    return state

  def _abstract_state(self) -> dict:
    """Shapes, dtypes and shardings of a fresh state, allocating nothing (the restore target of a checkpoint)."""
    out = self.rl.abstract_state()
    if self.rm is not None:
      out["reward_model"] = self.rm.abstract_state()
    return out

  def _save(self, state, host: HostState, arrays: dict):
    self.checkpointer.save(host.step, state, dataclasses.asdict(host), arrays)

  # -- the loop -------------------------------------------------------------------------------------------------------

  def __call__(self) -> dict:
    cfg, rl = self.cfg, self.rl
    latest = self.checkpointer.latest_step()
    arrays: dict = {}
    if latest is not None:
      host_dict, arrays = self.checkpointer.restore_host(latest)
      host = HostState(**host_dict)
      state = self.checkpointer.restore(latest, self._abstract_state())
      if self.offline is not None:
        self.offline.load()
      origin = f"resumed from step {latest}"
    else:
      host, state, origin = HostState(), self._fresh_state(self._initial_params()), "fresh"
    log.info("rl %s (%s, reward %r, estimator %r, loss %r): %s", cfg.rl.method, self.run.method.data,
             self.run.reward, self.run.estimator, self.run.policy_loss, origin)
    writer = MetricWriter(self.workdir, keep_rows=host.metric_rows if latest is not None else 0)
    self.rollout_log = RolloutLog(self.workdir, keep_through_step=host.step if latest is not None else None,
                                  enabled=rl.log_rollouts)
    status = "completed"
    self.bar = progress_bar(self.total, host.step, cfg.progress, desc=f"rl {cfg.rl.method}")
    try:
      with Interrupt() as interrupt:
        if latest is None:
          state, arrays = self._start(state, host, arrays, writer)
        while host.step < self.total:
          state = self._step(state, host, writer)
          stop = interrupt.requested and host.step < self.total
          state, arrays = self._boundary(state, host, arrays, writer, force_save=stop)
          if stop:
            status = "interrupted"
            break
          if cfg.debug_step_sleep_s:
            time.sleep(cfg.debug_step_sleep_s)
    finally:
      self.bar.close()
      self.checkpointer.close()
      writer.close()
      self.rollout_log.close()
      rl.close()
    summary = {"status": status, "origin": origin, "steps": host.step, "total_steps": self.total,
               **self.run.as_dict(), "bad_rows": self.task.bad_rows, "num_train_questions": len(self.task.train),
               "num_test_questions": len(self.task.test), "prompt_len": self.task.prompt_len,
               "checkpoint": str(self.workdir / "checkpoints" / str(host.step))}
    summary.update(self._accuracy_summary(host, writer))
    summary.update(self._window_means())
    if host.proxy_trace:
      summary["overoptimisation"] = self._overoptimisation(host)
    if host.rm_history:
      acc = [m["rm_heldout_label_accuracy"] for m in host.rm_history]
      pair = [m.get("rm_heldout_pair_accuracy", float("nan")) for m in host.rm_history]
      summary["reward_model"] = {"rounds": len(acc), "heldout_label_accuracy": acc, "first_heldout_label_accuracy":
                                 acc[0], "last_heldout_label_accuracy": acc[-1], "heldout_pair_accuracy": pair,
                                 "first_heldout_pair_accuracy": pair[0], "last_heldout_pair_accuracy": pair[-1]}
      if "rm_selected_step" in host.rm_history[0]:  # reward_model.select_every: the state each round kept
        summary["reward_model"].update({k: [m[f"rm_{k}"] for m in host.rm_history] for k in (
            "selected_step", "select_pair_accuracy", "select_pair_accuracy_last", "heldout_pair_accuracy_last",
            "heldout_label_accuracy_last")})
    write_rl_report(self.workdir, summary)
    if status == "completed":
      write_run(self.workdir, job="rl", model=self.model_cfg, tokenizer=self.tokenizer_ref, step=host.step,
                config=self.run.as_dict()["config"], parents=self.parents)
    return summary

  def _start(self, state, host: HostState, arrays, writer):
    """Before step 0: held-out accuracy of the initial policy, the offline dataset (RFT / DPO), then the step-0
    boundary (iteration 0's start and a checkpoint)."""
    if getattr(self, "warmup_metrics", None):
      writer.write(0, self.warmup_metrics)
      host.metric_rows += 1
    if self.offline is not None:
      self.offline.build(state, self.cfg.seed)
      writer.write(0, self.offline.metrics)
      host.metric_rows += 1
    return self._boundary(state, host, arrays, writer, force_save=True)

  def _draw(self, host: HostState, n: int) -> np.ndarray:
    idx = task_lib.stream_indices(self.cfg.seed, len(self.task.train), host.position, n)
    host.position += n
    return idx

  def _step(self, state, host: HostState, writer):
    cfg, rl = self.cfg, self.rl
    it = host.step // cfg.rl.steps
    t0 = time.perf_counter()
    state, m = STEPS[self.run.method.source.step](rl, state, draw=lambda n: self._draw(host, n), offline=self.offline,
                                                  index=host.step, t0=t0)
    host.step += 1
    if m.get("skipped"):
      host.consecutive_nonfinite += 1
      log.warning("step %d: non-finite loss or update: skipped (%d in a row)", host.step, host.consecutive_nonfinite)
      if host.consecutive_nonfinite >= cfg.rl.max_consecutive_nonfinite:
        raise FloatingPointError(f"{host.consecutive_nonfinite} non-finite updates in a row (rl."
                                 f"max_consecutive_nonfinite={cfg.rl.max_consecutive_nonfinite}); the last checkpoint "
                                 f"is step {self.checkpointer.latest_step()} in {self.checkpointer.directory}")
    else:
      host.consecutive_nonfinite = 0
    self.rollout_log.write(host.step, m.pop("rollouts", []))
    if "proxy_reward_mean" in m:
      host.proxy_trace.append([host.step, m["proxy_reward_mean"], m["accuracy"]])
    writer.write(host.step, {k: v for k, v in m.items() if isinstance(v, (int, float))}, iteration=it)
    host.metric_rows += 1
    self.bar.update(1)
    shown = {"reward": m.get("reward_mean"), "acc": m.get("accuracy"), "proxy": m.get("proxy_reward_mean"),
             "kl": m.get("kl_ref"), "tok/s": m.get("tokens_per_s"), **self.last_heldout}
    self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items() if v is not None}, refresh=False)
    return state

  def _boundary(self, state, host: HostState, arrays, writer, force_save: bool = False):
    """After step host.step (or before the first): evaluation when due, the next iteration's start when an
    iteration ended, then a checkpoint when due. The checkpoint holds the state ready for the next step."""
    cfg = self.cfg
    s = host.step
    every = cfg.eval.every
    if self.held_out is not None and (s == 0 or s == self.total or (every and s % every == 0)):
      res = self.held_out(state["policy"]["params"], s)
      row = {k: v for k, v in res.items() if not k.startswith("_")}
      if s == 0:
        host.eval_before = res
      if s == self.total:
        host.eval_before = {**host.eval_before, **{f"after{k}": v for k, v in res.items() if k.startswith("_")}}
      writer.write(s, row, evaluation=True)
      host.metric_rows += 1
      self.last_heldout = {"heldout": row.get("test_accuracy_greedy", row.get("test_accuracy_sampled"))}
    if host.proxy_trace and (s == self.total or s % cfg.checkpoint.every == 0):
      self._overoptimisation(host)
    iteration_end = s % cfg.rl.steps == 0 and s < self.total
    if iteration_end and host.prepared_iteration < s // cfg.rl.steps:
      state, arrays = self._start_iteration(state, host, arrays, writer, s // cfg.rl.steps)
    if force_save or iteration_end or s == self.total or s % cfg.checkpoint.every == 0:
      self._save(state, host, arrays)
    return state, arrays

  def _start_iteration(self, state, host: HostState, arrays, writer, iteration: int) -> tuple[dict, dict]:
    """Algorithm 1, lines 3 and 13: pi_ref <- pi_theta; the reward model continues training on the current policy's
    samples plus a replay of earlier rounds (kept in the checkpoint's host arrays as "replay/<key>")."""
    state = dict(state)
    if self.run.needs_reference:
      state["ref"] = self.rl.copy_params(state["policy"]["params"])
    if self.rm is not None:
      replay = {k[len("replay/"):]: v for k, v in arrays.items() if k.startswith("replay/")}
      state, replay, metrics = self.rm.train_round(state, replay, host.rm_rounds, self.cfg.seed)
      arrays = {**{k: v for k, v in arrays.items() if not k.startswith("replay/")},
                **{f"replay/{k}": v for k, v in replay.items()}}
      host.rm_rounds += 1
      host.rm_history.append(metrics)
      writer.write(host.step, metrics, iteration=iteration)
      host.metric_rows += 1
    host.prepared_iteration = iteration
    return state, arrays

  def _window_means(self) -> dict:
    """Means of the first and the last window of steps (overoptimisation.window_for) of what the rollouts looked
    like, read back from metrics.jsonl (so a resumed run reports the same): `rollouts_first` / `rollouts_last`."""
    rows = [r for r in read_jsonl(self.workdir / "metrics.jsonl") if "accuracy" in r and not r.get("evaluation")]
    if not rows or jax.process_index() != 0:
      return {}
    window = overoptimisation.window_for(len(rows))
    out = {}
    for name, part in (("rollouts_first", rows[:window]), ("rollouts_last", rows[-window:])):
      out[name] = {k: float(np.mean([r[k] for r in part if k in r])) for k in WINDOW_METRICS
                   if any(k in r for r in part)}
    return out

  def _overoptimisation(self, host: HostState) -> dict:
    """Reward hacking so far: spans where the learned (proxy) reward rose while the rollouts' rule accuracy fell,
    warned of once each (with their steps); the summary's `overoptimisation` entry."""
    steps, proxy, rule = (list(c) for c in zip(*host.proxy_trace))
    window = overoptimisation.window_for(self.total)
    spans = overoptimisation.divergent_spans(steps, proxy, rule, window=window)
    for sp in spans:
      if sp.start not in host.warned_spans:
        host.warned_spans.append(sp.start)
        log.warning("reward hacking: the learned reward rises while the rule grader's accuracy of the same rollouts "
                    "falls, %s", sp.describe())
    first, last = slice(0, window), slice(-window, None)
    return {"proxy": "proxy_reward_mean", "rule": "accuracy", "window": window,
            "proxy_first": float(np.mean(proxy[first])), "proxy_last": float(np.mean(proxy[last])),
            "rule_first": float(np.mean(rule[first])), "rule_last": float(np.mean(rule[last])),
            "spans": [dataclasses.asdict(sp) for sp in spans]}

  def _accuracy_summary(self, host: HostState, writer) -> dict:
    before = host.eval_before
    out = {}
    for name in ("greedy", "sampled"):
      b, a = before.get(f"_per_question_{name}"), before.get(f"after_per_question_{name}")
      if b is None:
        continue
      out[f"test_accuracy_{name}_before"] = float(np.mean(b))
      if a is not None:
        out[f"test_accuracy_{name}_after"] = float(np.mean(a))
        out[f"test_accuracy_{name}_gain"] = paired_gain(b, a)
    return out


def run(config, workdir: str) -> dict:
  """Stage entry point (config.job = "rl"): resolve the config once, then train (or resume) in `workdir`."""
  rl_run = resolve_rl_config(config)
  distributed.initialize(rl_run.config.distributed)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  return RLLoop(rl_run, workdir)()
