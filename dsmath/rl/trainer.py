"""One RL trainer for every method of the unified paradigm: a method = (data source, reward, gradient coefficient).

  method      data source                                  reward                  loss (gradient coefficient)
  sft         gold solutions of the SFT set                -                       sft  (GC = 1)
  rft         k samples per question from the SFT model,    rule                   rft  (GC = I(o), Eq. 10)
              once (offline), correct ones deduplicated
  online_rft  G samples per question from the current policy rule (or config)     online_rft (GC = I(o))
  dpo         (correct, incorrect) pairs sampled from the     rule                  dpo  (Eq. 14), ref = SFT model
              SFT model once (offline)
  ppo         1 sample per question from the current policy  config: rule / orm    ppo  (Eq. 18) + value model, GAE
  grpo        G samples per question from the current policy config: rule / orm    grpo (Eq. 21), outcome or process
                                                             (outcome); step_check /  advantages
                                                             prm (process)

Iterative RL (Algorithm 1): for each of `rl.iterations`: pi_ref <- pi_theta; `rl.steps` steps, each sampling a batch
of questions, G outputs from pi_old = pi_theta, rewards, advantages, then `rl.mu` updates; then, with a learned reward
model, continue training it on samples of the current policy plus a `replay_fraction` replay of historical data.

Stage entry point: `run(config, workdir) -> dict` (config.job = "rl"); see configs/grpo_toy.py for every key.
"""
import dataclasses
import json
import os
import random
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dsmath import model, sample
from dsmath.data import synthetic
from dsmath.rl import advantages as adv_lib
from dsmath.rl import losses, policy, rewards
from dsmath.rl.steps import make_policy_step, make_value_step
from dsmath.rl.task import Task, build_task
from dsmath.train import OPTIMIZER_DEFAULTS, build_step_fn, init_state, make_optimizer


@dataclasses.dataclass(frozen=True)
class Method:
  data: str  # "gold" | "offline_samples" | "offline_pairs" | "policy"
  loss: str  # a key of losses.POLICY_LOSSES
  default_reward: str  # a key of rewards.REWARDS ("" for none)
  samples_per_question: str  # the config key giving how many outputs per question


METHODS = {
    "sft": Method("gold", "sft", "", ""),
    "rft": Method("offline_samples", "rft", "rule", "rft_samples"),
    "online_rft": Method("policy", "online_rft", "rule", "group_size"),
    "dpo": Method("offline_pairs", "dpo", "rule", "rft_samples"),
    "ppo": Method("policy", "ppo", "rule", "ppo_samples"),
    "grpo": Method("policy", "grpo", "rule", "group_size"),
}


def default_config() -> ml_collections.ConfigDict:
  """Every key of the RL stage with the paper's defaults where the paper gives one (sec. 4.2)."""
  c = ml_collections.ConfigDict()
  c.job = "rl"
  c.seed = 0
  c.model = ml_collections.ConfigDict({"preset": "tiny"})
  c.tokenizer = ""  # a tokenizer path; "" trains a character-level sentencepiece on the synthetic task
  c.init_from = ""  # a checkpoint (dsmath.train layout) holding the SFT policy; "" = init + rl.sft_warmup_steps of SFT
  c.task = ml_collections.ConfigDict({
      "num_train": 2000, "num_test": 200, "test_fraction": 0.2,
      # the tokenizer trained on the task when config.tokenizer is "": BPE keeps the toy's rows short (words are
      # single pieces, digits split), so rollouts and updates cost a fraction of a character-level vocabulary's
      "tokenizer_type": "bpe", "tokenizer_vocab": 384,
      "difficulty": ml_collections.ConfigDict(dataclasses.asdict(synthetic.Difficulty())),
  })
  c.optimizer = ml_collections.ConfigDict({**OPTIMIZER_DEFAULTS, "peak_lr": 1e-6, "schedule": "constant",
                                           "warmup_steps": 0, "weight_decay": 0.1, "grad_clip": 1.0})
  c.rl = ml_collections.ConfigDict({
      "method": "grpo",
      "reward": "",  # "" = the method's default (rewards.REWARDS keys)
      "grade_mode": "math_verify",
      "iterations": 1, "steps": 100, "mu": 1,
      "prompts_per_step": 16, "group_size": 64, "rft_samples": 8, "ppo_samples": 1,
      "max_new_tokens": 1024, "temperature": 1.0,
      "advantage": ml_collections.ConfigDict({"scale_std": True, "eps": 1e-4, "ddof": 1}),
      "loss": ml_collections.ConfigDict(dataclasses.asdict(losses.LossConfig())),
      "ppo": ml_collections.ConfigDict({"gamma": 1.0, "lam": 0.95, "kl_beta": 0.04, "whiten": False,
                                        "value_lr": 1e-5}),
      "step_separator": "\n",
      "sft_warmup_steps": 0, "sft_lr": 3e-3, "sft_batch": 32,
      "reward_model": ml_collections.ConfigDict({
          "steps": 50, "batch": 32, "lr": 2e-5, "replay_fraction": 0.1, "label": "hard",
          "shepherd_completions": 4, "samples_per_question": 2,
      }),
      "eval_every": 0, "eval_samples": 1,
  })
  return c


# ----------------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------------


class RLTrainer:
  """Holds the task, the policy (and value / reward model) states and the jitted steps; `run` drives a method."""

  def __init__(self, config, workdir: str, task: Task | None = None, policy_params=None):
    self.config, self.workdir = config, workdir
    rl = config.rl
    if rl.method not in METHODS:
      raise KeyError(f"config.rl.method={rl.method!r} is unknown; valid: {sorted(METHODS)}")
    self.method = METHODS[rl.method]
    self.reward_name = rl.reward or self.method.default_reward
    if self.reward_name and self.reward_name not in rewards.REWARDS:
      raise KeyError(f"config.rl.reward={self.reward_name!r} is unknown; valid: {sorted(rewards.REWARDS)}")
    if rl.method != "grpo" and self.reward_name in rewards.PROCESS_REWARDS:
      raise ValueError(f"config.rl.reward={self.reward_name!r} is a process reward: only rl.method='grpo' uses one")
    task = task or build_task(config, workdir)
    self.task = dataclasses.replace(task, completion_len=int(rl.max_new_tokens))  # a shared task, this run's length
    model_dict = dict(config.model.to_dict())
    model_dict.setdefault("vocab_size", self.task.tokenizer.vocab_size)
    self.model_cfg = model.ModelConfig.from_dict(model_dict)
    if self.model_cfg.vocab_size < self.task.tokenizer.vocab_size:
      raise ValueError(f"config.model.vocab_size={self.model_cfg.vocab_size} < tokenizer vocab "
                       f"{self.task.tokenizer.vocab_size}")
    self.loss_cfg = losses.LossConfig(**rl.loss.to_dict())
    self.rng = jax.random.key(config.seed)
    self.py_rng = random.Random(config.seed)
    if policy_params is None:
      policy_params = jax.jit(model.init_params, static_argnums=0)(self.model_cfg, self._next_key())
    self.params = policy_params
    self.metrics_path = os.path.join(workdir, "rl_metrics.jsonl")
    os.makedirs(workdir, exist_ok=True)
    self.history = []
    self.rm_params, self.rm_data = None, []
    self.ref_params = None
    # jitted once per trainer (one compilation per batch shape)
    self._logp_fn = jax.jit(policy.completion_logprobs, static_argnums=(0, 6))
    self._rm_fn = jax.jit(rewards.reward_model_scores, static_argnums=0)

  def _next_key(self):
    self.rng, k = jax.random.split(self.rng)
    return k

  # -- sampling and scoring ------------------------------------------------------------------------------------------

  def rollout(self, params, problems, num_samples: int, rng=None) -> dict:
    """G samples per problem from `params`: a batch dict (numpy) plus texts, golds and timing. rng: the sampling key
    (default: the next key of the trainer's stream)."""
    t0 = time.perf_counter()
    prompt, pmask = self.task.prompt_ids(problems)
    lengths_p = pmask.sum(1).astype(np.int32)
    prompts = [row[self.task.prompt_len - n:].tolist() for row, n in zip(prompt, lengths_p)]
    out = sample.generate(self.model_cfg, params, prompts, max_new_tokens=self.task.completion_len,
                          strategy=sample.Temperature(float(self.config.rl.temperature)), num_samples=num_samples,
                          eos_id=self.task.tokenizer.eos_id, tokenizer=self.task.tokenizer,
                          rng=self._next_key() if rng is None else rng, pad_id=self.task.tokenizer.pad_id)
    rep = np.repeat(np.arange(len(problems)), num_samples)
    mask = (np.arange(self.task.completion_len)[None] < out.lengths[:, None]).astype(np.float32)
    return {"prompt": prompt[rep], "prompt_mask": pmask[rep], "completion": out.tokens.astype(np.int32),
            "mask": mask, "old_logp": out.logprobs.astype(np.float32) * mask, "lengths": out.lengths,
            "texts": list(out.texts), "golds": [problems[i].answer for i in rep],
            "questions": [problems[i].question for i in rep], "finish": out.finish_reasons,
            "rollout_s": time.perf_counter() - t0}

  def score(self, ro: dict, reward: str) -> dict:
    """Adds "rewards" [R] (outcome: the reward; process: the outcome rule reward, for logging) and, for process
    rewards, "step_rewards"/"step_mask" [R, C]."""
    t0 = time.perf_counter()
    sep = self.config.rl.step_separator
    decode = self.task.tokenizer.decode
    ro["correct"] = rewards.rule_rewards(ro["texts"], ro["golds"], self.config.rl.grade_mode)
    if reward == "rule":
      ro["rewards"] = ro["correct"]
    elif reward == "step_check":
      ro["step_rewards"], ro["step_mask"] = rewards.step_check_rewards(ro["texts"], ro["questions"], ro["completion"],
                                                                       ro["lengths"], decode, sep)
      ro["rewards"] = ro["correct"]
    elif reward in ("orm", "prm"):
      scores = np.asarray(self._rm_scores(ro))
      if reward == "orm":
        ro["rewards"] = np.asarray(policy.last_token_scalar(jnp.asarray(scores), jnp.asarray(ro["mask"])))
      else:
        ro["step_mask"] = rewards.text_step_ends(ro["texts"], ro["completion"], ro["lengths"], decode, sep)
        ro["step_rewards"] = scores * ro["step_mask"]
        ro["rewards"] = ro["correct"]
    ro["scoring_s"] = time.perf_counter() - t0
    return ro

  def _rm_scores(self, ro):
    if self.rm_params is None:
      raise ValueError(f"reward {self.reward_name!r} needs a trained reward model (train_reward_model first)")
    return self._rm_fn(self.model_cfg, self.rm_params, ro["prompt"], ro["prompt_mask"], ro["completion"], ro["mask"])

  def _logp(self, params, batch):
    return np.asarray(self._logp_fn(self.model_cfg, params, batch["prompt"], batch["prompt_mask"], batch["completion"],
                         batch["mask"], float(self.config.rl.temperature))[0])

  # -- reward model (ORM / PRM, Math-Shepherd labels, replay) ---------------------------------------------------------

  def train_reward_model(self, steps: int | None = None) -> dict:
    """(Continues) training the reward model on current-policy samples plus a replay of historical data."""
    rmc = self.config.rl.reward_model
    kind = self.reward_name
    probs = self.py_rng.sample(self.task.train, min(len(self.task.train), int(rmc.batch)))
    ro = self.rollout(self.params, probs, int(rmc.samples_per_question))
    correct = rewards.rule_rewards(ro["texts"], ro["golds"], self.config.rl.grade_mode)
    new = {k: ro[k] for k in ("prompt", "prompt_mask", "completion", "mask")}
    new["completion_mask"] = new.pop("mask")
    if kind == "orm":
      new["label"] = correct
    else:
      prompts = [p.prompt for p in probs for _ in range(int(rmc.samples_per_question))]
      labels = rewards.math_shepherd_labels(prompts, ro["texts"], ro["golds"], self._complete_fn(),
                                            int(rmc.shepherd_completions), self.config.rl.step_separator,
                                            self.config.rl.grade_mode)
      vals = [list(lab.soft if rmc.label == "soft" else lab.hard) for lab in labels]
      ends = [rewards.token_ends(ro["completion"][b, :ro["lengths"][b]].tolist(), lab.char_ends,
                                 self.task.tokenizer.decode).tolist() if ro["lengths"][b] else []
              for b, lab in enumerate(labels)]
      new["step_label"], new["step_mask"] = rewards.place_step_rewards(vals, ends, self.task.completion_len)
    # replay: keep 10% of the historical rows next to the new ones
    data, n_replay = new, 0
    if self.rm_data and rmc.replay_fraction > 0:
      old = {k: np.concatenate([d[k] for d in self.rm_data]) for k in new}
      n_old = len(old["prompt"])
      # n_replay / (n_new + n_replay) = replay_fraction
      n_replay = max(1, int(round(rmc.replay_fraction * len(new["prompt"]) / (1 - rmc.replay_fraction))))
      keep = np.random.default_rng(len(self.rm_data)).choice(n_old, n_replay, replace=n_replay > n_old)
      data = {k: np.concatenate([new[k], old[k][keep]]) for k in new}
    self.rm_data.append(new)
    self.rm_last_data = data  # what this round trained on (new rows first, then the replayed ones)
    if self.rm_params is None:
      self.rm_params = policy.scalar_head_from_policy(jax.tree.map(jnp.copy, self.params), self._next_key(),
                                                      self.model_cfg.hidden_size)
      opt_cfg = {**self.config.optimizer.to_dict(), "peak_lr": float(rmc.lr)}
      self.rm_opt, _ = make_optimizer(opt_cfg, 1)
      self.rm_state = init_state(self.rm_params, self.rm_opt, self.config.seed)
      self.rm_step = jax.jit(build_step_fn(self.rm_opt, rewards.reward_model_loss(self.model_cfg, kind)))
    n = len(data["prompt"])
    metrics = {}
    for _ in range(int(steps if steps is not None else rmc.steps)):
      idx = np.random.default_rng(int(self.rm_state["step"])).choice(n, min(n, int(rmc.batch)), replace=False)
      self.rm_state, metrics = self.rm_step(self.rm_state, {k: v[idx] for k, v in data.items()})
    self.rm_params = self.rm_state["params"]
    n = len(data["prompt"])
    return {**{k: float(v) for k, v in metrics.items()}, "rows_new": n - n_replay, "rows_replay": n_replay,
            "replay_share": n_replay / n}

  def _complete_fn(self) -> Callable:
    """complete(prompts, prefixes, n) -> n continuations per solution prefix, sampled from the current policy."""
    tok = self.task.tokenizer

    def complete(prompts, prefixes, n):
      out = []
      for i in range(0, len(prefixes), 64):
        chunk = prefixes[i:i + 64]
        rows = [[tok.bos_id] + tok.encode(q) + tok.encode(pre) for q, pre in zip(prompts[i:i + 64], chunk)]
        res = sample.generate(self.model_cfg, self.params, rows, max_new_tokens=self.task.completion_len,
                              strategy=sample.Temperature(float(self.config.rl.temperature)), num_samples=n,
                              eos_id=tok.eos_id, tokenizer=tok, rng=self._next_key(), pad_id=tok.pad_id)
        out += [list(res.texts[j * n:(j + 1) * n]) for j in range(len(chunk))]
      return out

    return complete

  # -- the methods ---------------------------------------------------------------------------------------------------

  def _log(self, step: int, metrics: dict):
    row = {"step": step, **{k: (float(v) if np.ndim(v) == 0 else v) for k, v in metrics.items()}}
    self.history.append(row)
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(row) + "\n")

  def _rollout_metrics(self, ro: dict, group: int) -> dict:
    r = np.asarray(ro["rewards"], np.float32)
    g = r.reshape(-1, group)
    lengths = ro["lengths"]
    return {"reward_mean": r.mean(), "reward_std": r.std(), "accuracy": np.mean(ro["correct"]),
            "zero_std_group_fraction": float(np.mean(g.max(1) == g.min(1))),
            "completion_len_mean": lengths.mean(), "completion_len_max": lengths.max(),
            "truncated_fraction": float(np.mean([f == "length" for f in ro["finish"]])),
            "rollout_s": ro["rollout_s"], "scoring_s": ro["scoring_s"]}

  def _opt(self, lr: float, steps: int):
    opt_cfg = {**self.config.optimizer.to_dict(), "peak_lr": float(lr)}
    return make_optimizer(opt_cfg, max(steps, 1))[0]

  def sft(self, steps: int, lr: float, batch_size: int, problems=None, log_prefix: str = "sft") -> dict:
    """Supervised fine-tuning on gold solutions (GC = 1): the SFT stage and the paradigm's SFT method."""
    problems = problems or self.task.train
    opt = self._opt(lr, steps)
    step = make_policy_step(self.model_cfg, opt, "sft", self.loss_cfg, 1.0)
    state = init_state(self.params, opt, self.config.seed)
    metrics = {}
    for s in range(steps):
      chosen = self.py_rng.sample(problems, min(batch_size, len(problems)))
      prompt, pmask = self.task.prompt_ids(chosen)
      comp, cmask = self.task.completion_ids([p.solution for p in chosen])
      state, metrics = step(state, {"prompt": prompt, "prompt_mask": pmask, "completion": comp, "mask": cmask})
    self.params = state["params"]
    return {(f"{log_prefix}_{k}" if log_prefix else k): float(v) for k, v in metrics.items()}

  def evaluate(self, problems, num_samples: int = 1, params=None, tag: int = 0) -> float:
    """Mean rule-graded accuracy of num_samples samples per problem (RL temperature) from params (default: the
    current policy). Sampled with a key of its own (seed, tag): evaluating never shifts the training stream."""
    key = jax.random.fold_in(jax.random.key(self.config.seed + 7919), tag)
    ro = self.rollout(self.params if params is None else params, problems, num_samples, rng=key)
    return float(rewards.rule_rewards(ro["texts"], ro["golds"], self.config.rl.grade_mode).mean())

  def run(self, on_iteration: Callable | None = None, eval_problems=None) -> dict:
    """Runs config.rl.method; on_iteration(iteration, ref_params, policy_params) is called as each RL iteration
    starts (after pi_ref <- pi_theta), e.g. to checkpoint or inspect. With eval_problems, held-out accuracy
    (rl.eval_samples samples per problem) is logged as `test_accuracy` at step 0, every rl.eval_every steps (0: no
    others) and at the last step, and returned as test_accuracy_before / test_accuracy_after."""
    rl = self.config.rl
    every = int(rl.eval_every)
    held_out = lambda params, step: self.evaluate(eval_problems, int(rl.eval_samples), params, tag=step)
    accuracy = {}
    name = rl.method
    total = int(rl.iterations) * int(rl.steps)
    if eval_problems:
      accuracy["test_accuracy_before"] = held_out(self.params, 0)
      accuracy["test_accuracy_after"] = accuracy["test_accuracy_before"]  # until a step is taken
      self._log(0, {"test_accuracy": accuracy["test_accuracy_before"]})
    if name == "sft":
      metrics = self.sft(total, float(self.config.optimizer.peak_lr), int(rl.sft_batch), log_prefix="")
      if eval_problems:
        metrics["test_accuracy"] = accuracy["test_accuracy_after"] = held_out(self.params, total)
      self._log(total, metrics)
      return {"steps": total, "final": self.history[-1], **accuracy}
    opt = self._opt(self.config.optimizer.peak_lr, total * int(rl.mu))
    pstep = make_policy_step(self.model_cfg, opt, self.method.loss, self.loss_cfg, float(rl.temperature))
    state = init_state(self.params, opt, self.config.seed)
    group = int(rl[self.method.samples_per_question]) if self.method.samples_per_question else 1
    offline = self._offline_data(group) if self.method.data.startswith("offline") else None
    ref_params = None  # online methods: set per iteration; RFT has none, DPO scored its SFT reference offline
    if name == "ppo":
      # a copy: the policy's buffers are donated to its own step
      vparams = policy.scalar_head_from_policy(jax.tree.map(jnp.copy, self.params), self._next_key(),
                                               self.model_cfg.hidden_size)
      vopt = self._opt(rl.ppo.value_lr, total * int(rl.mu))
      vstate, vstep = init_state(vparams, vopt, self.config.seed), make_value_step(self.model_cfg, vopt, self.loss_cfg)
      value_fn = jax.jit(policy.completion_scalars, static_argnums=(0, 6))
    if self.reward_name in ("orm", "prm"):
      self._log(0, {f"rm_{k}": v for k, v in self.train_reward_model().items()})
    step_no = 0
    for it in range(int(rl.iterations)):
      if name not in ("rft", "dpo"):  # Algorithm 1: pi_ref <- pi_theta each iteration (offline methods keep the SFT ref)
        ref_params = jax.tree.map(jnp.copy, state["params"])
      self.ref_params = ref_params
      if on_iteration is not None:
        on_iteration(it, ref_params, state["params"])
      for _ in range(int(rl.steps)):
        t_step = time.perf_counter()
        metrics = {"iteration": it}
        if offline is not None:
          batch = offline[step_no % len(offline)]
        else:
          problems = self.py_rng.sample(self.task.train, int(rl.prompts_per_step))
          ro = self.score(self.rollout(state["params"], problems, group), self.reward_name)
          metrics.update(self._rollout_metrics(ro, group))
          batch = {k: ro[k] for k in ("prompt", "prompt_mask", "completion", "mask", "old_logp")}
          batch = self._method_batch(name, ro, batch, ref_params,
                                     (vstate["params"], value_fn) if name == "ppo" else None)
        t_up = time.perf_counter()
        for _ in range(int(rl.mu)):
          state, m = pstep(state, batch)
          if name == "ppo":
            vstate, vm = vstep(vstate, batch)
            m = {**m, **{f"value_{k}": v for k, v in vm.items()}}
        metrics.update({k: float(v) for k, v in m.items()})
        metrics["update_s"] = time.perf_counter() - t_up
        metrics["step_s"] = time.perf_counter() - t_step
        metrics["tokens_per_s"] = float(np.sum(batch["mask"])) * int(rl.mu) / max(metrics["step_s"], 1e-9)
        step_no += 1
        if eval_problems and ((every and step_no % every == 0) or step_no == total):
          metrics["test_accuracy"] = accuracy["test_accuracy_after"] = held_out(state["params"], step_no)
        self._log(step_no, metrics)
      self.params = state["params"]
      if self.reward_name in ("orm", "prm") and it + 1 < int(rl.iterations):
        self._log(step_no, {f"rm_{k}": v for k, v in self.train_reward_model().items()})
    self.params = state["params"]
    return {"steps": step_no, "final": self.history[-1] if self.history else {}, **accuracy}

  def _method_batch(self, name, ro, batch, ref_params, value):
    rl = self.config.rl
    mask = jnp.asarray(batch["mask"])
    if name == "online_rft":
      batch["weights"] = np.asarray(ro["correct"], np.float32)  # GC = I(o)
      return batch
    ref = self._logp(ref_params, batch)
    batch["ref_logp"] = ref
    if name == "grpo":
      a = rl.advantage
      if "step_mask" in ro:
        adv = adv_lib.grpo_process(jnp.asarray(ro["step_rewards"]), jnp.asarray(ro["step_mask"]), mask,
                                   group_size=int(rl.group_size), scale_std=bool(a.scale_std), eps=float(a.eps),
                                   ddof=int(a.ddof))
      else:
        adv = adv_lib.grpo_outcome(jnp.asarray(ro["rewards"]), mask, group_size=int(rl.group_size),
                                   scale_std=bool(a.scale_std), eps=float(a.eps), ddof=int(a.ddof))
      batch["advantages"] = np.asarray(adv)
      return batch
    if name == "ppo":
      vparams, value_fn = value
      values = np.asarray(value_fn(self.model_cfg, vparams, batch["prompt"], batch["prompt_mask"], batch["completion"],
                                   batch["mask"], True))
      tok_r = adv_lib.ppo_token_rewards(jnp.asarray(ro["rewards"]), jnp.asarray(batch["old_logp"]), jnp.asarray(ref),
                                        mask, float(rl.ppo.kl_beta))
      adv, ret = adv_lib.gae(tok_r, jnp.asarray(values), mask, float(rl.ppo.gamma), float(rl.ppo.lam))
      if rl.ppo.whiten:
        adv = adv_lib.whiten(adv, mask)
      batch.update(advantages=np.asarray(adv), returns=np.asarray(ret), old_values=values)
      return batch
    raise ValueError(f"config.rl.method={name!r} has no online batch")

  def _offline_data(self, k: int) -> list:
    """RFT: correct deduplicated samples of the initial (SFT) model; DPO: (correct, incorrect) pairs. Built once."""
    rl = self.config.rl
    per = int(rl.prompts_per_step)
    problems = self.task.train[:per * int(rl.steps)]
    ro = self.score(self.rollout(self.params, problems, k), "rule")
    prompt_of = {}
    good, pairs = [], []
    for qi in range(len(problems)):
      rows = range(qi * k, (qi + 1) * k)
      ok = [r for r in rows if ro["correct"][r] > 0]
      bad = [r for r in rows if ro["correct"][r] == 0]
      seen = set()
      for r in ok:
        if ro["texts"][r] not in seen:  # deduplicate identical outputs of one question
          seen.add(ro["texts"][r])
          good.append(r)
      pairs += [(ok[j], bad[j]) for j in range(min(len(ok), len(bad)))]
      prompt_of[qi] = rows
    keys = ("prompt", "prompt_mask", "completion", "mask")
    rows = good if self.method.data == "offline_samples" else [r for p in pairs for r in p]
    if not rows:
      raise ValueError(f"rl.method={rl.method!r}: the initial policy produced no usable sample "
                       f"({int(np.sum(ro['correct']))} correct of {len(ro['texts'])}); warm it up with SFT first")
    batches = []
    if self.method.data == "offline_samples":
      order = np.random.default_rng(self.config.seed).permutation(np.array(good))
      for i in range(0, len(order), per * k):
        idx = order[i:i + per * k]
        b = {kk: ro[kk][idx] for kk in keys}
        b["weights"] = np.ones(len(idx), np.float32)  # GC = I(o) = 1 on the kept correct outputs
        batches.append(b)
    else:
      for i in range(0, len(pairs), per):
        chunk = pairs[i:i + per]
        idx = np.array([c for c, _ in chunk] + [r for _, r in chunk])
        b = {kk: ro[kk][idx] for kk in keys}
        b["ref_logp"] = self._logp(self.params, b)  # the SFT model is DPO's reference
        batches.append(b)
    self._log(0, {"offline_samples": len(ro["texts"]), "offline_correct": float(np.sum(ro["correct"])),
                  "offline_rows": len(rows), "offline_batches": len(batches)})
    return batches


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Stage entry point: SFT warm-up if asked, then the configured method; writes rl_metrics.jsonl and summary.json."""
  os.makedirs(workdir, exist_ok=True)
  defaults = default_config()
  unknown = sorted(set(config.rl.keys()) - set(defaults.rl.keys()))
  if unknown:
    raise KeyError(f"unknown config.rl key(s) {unknown}; valid: {sorted(defaults.rl.keys())}")
  params = None
  task = build_task(config, workdir)
  if config.get("init_from"):
    vocab = config.model.get("vocab_size", task.tokenizer.vocab_size)
    cfg = model.ModelConfig.from_dict({**config.model.to_dict(), "vocab_size": vocab})
    from dsmath.train import load_params
    params = load_params(config.init_from, model.abstract_params(cfg))
  trainer = RLTrainer(config, workdir, task=task, policy_params=params)
  summary = {"method": config.rl.method, "reward": trainer.reward_name}
  if config.rl.sft_warmup_steps:
    summary.update(trainer.sft(int(config.rl.sft_warmup_steps), float(config.rl.sft_lr), int(config.rl.sft_batch)))
  summary.update(trainer.run(eval_problems=task.test[:min(len(task.test), 64)]))
  summary["test_accuracy_gain"] = summary["test_accuracy_after"] - summary["test_accuracy_before"]
  # Hand the policy on like every training stage: a params checkpoint plus the tokenizer it speaks.
  from dsmath.train import save_params
  save_params(workdir, int(config.rl.steps) * int(config.rl.iterations), trainer.params)
  tok_path = config.tokenizer or os.path.join(workdir, "tokenizer", "spm.model")
  tmp = os.path.join(workdir, "tokenizer_ref.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"path": os.path.abspath(tok_path)}, f)
  os.replace(tmp, os.path.join(workdir, "tokenizer_ref.json"))
  summary["checkpoint"] = os.path.join(workdir, "checkpoints")
  tmp = os.path.join(workdir, "summary.json.tmp")
  with open(tmp, "w") as f:
    json.dump(summary, f, indent=1, default=float)
  os.replace(tmp, os.path.join(workdir, "summary.json"))
  return summary
