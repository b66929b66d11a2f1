"""The RL stage on the training substrate: every method runs from its config, iterative RL resets pi_ref and replays
reward-model data, GRPO raises the reward of an SFT policy, held-out evaluation does not disturb training, the step
keeps its batch on the device, and a bad config names its key.

One parent run (the paradigm's SFT entry on the toy task, with run.json) is built once for the module; every RL run
starts from it through `init_from`, as the recipe's stages do.
"""
import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from dsmath import rl
from dsmath.config import ConfigError
from dsmath.rl.checkpoint import rl_checkpointer
from dsmath.runs import load_run
from dsmath.sample import continuous, engine
from tests.rl_configs import METRIC_KEYS, config, first_round_scores, grpo_learning_config, rollout_accuracy_gain

def metric_rows(workdir) -> list:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sft_run(rl_parent_run):
  return rl_parent_run


@pytest.mark.parametrize("name,extra", [
    ("rft_toy", ()), ("online_rft_toy", ()), ("dpo_toy", ("margin", "reward_accuracy")),
    ("ppo_toy", ("value_loss", "clip_fraction")), ("grpo_toy", ("kl_ref", "clip_fraction")),
    ("grpo_ps_toy", ("kl_ref", "step_reward_mean")),
    ("dr_grpo_toy", ("kl_ref",)), ("dapo_toy", ("kept_groups", "refill_rounds")), ("gspo_toy", ("clip_fraction",)),
    ("rloo_toy", ("kl_ref",))])
def test_every_method_runs_from_its_config(tmp_path, sft_run, name, extra):
  summary = rl.run(config(name, sft_run), tmp_path)
  assert summary["status"] == "completed" and summary["steps"] == 1
  rows = metric_rows(tmp_path)
  step = [r for r in rows if r["step"] == 1 and "loss" in r][-1]
  online = rl.METHODS[summary["method"]].source.online
  for k in (METRIC_KEYS if online else ("loss", "grad_norm", "entropy")) + tuple(extra):
    assert k in step and math.isfinite(step[k]), (name, k, step)
  assert step["skipped"] == 0
  assert not summary["models"]["reward_model"]  # the learned-reward configs: tests/test_rl_reward_hacking.py
  if summary["method"] in ("rft", "dpo"):
    assert rows[0]["offline_rows"] > 0 and rows[0]["offline_correct"] > 0
  run = load_run(tmp_path)  # the policy is handed on like every training stage's
  assert run.job == "rl" and run.step == 1 and run.parents == (str(sft_run),)
  assert run.model == load_run(sft_run).model and run.tokenizer == load_run(sft_run).tokenizer
  assert summary["config"]["model"] == run.config["model"] == dataclasses.asdict(run.model)  # the model that ran


def _pair_accuracy_on_select_rows(cfg, workdir) -> float:
  """The within-question pair accuracy of the step-0 checkpoint's reward model on the first round's selection rows
  (sampled again from that checkpoint's policy with the round's keys), counted here pair by pair."""
  rows, scores, _ = first_round_scores(cfg, workdir, "select")
  z = scores[np.arange(len(scores)), rows["mask"].sum(1).astype(int) - 1]
  y, q = rows["label"][:, 0], rows["question"][:, 0]
  pairs = [(i, j) for i in range(len(q)) for j in range(len(q)) if q[i] == q[j] and y[i] > y[j]]
  assert pairs, "no question of the selection rows has a right and a wrong sample: the test says nothing"
  return sum(z[i] > z[j] for i, j in pairs) / len(pairs)


def test_reward_model_round_keeps_the_state_that_orders_pairs_best(tmp_path, sft_run):
  """reward_model.select_every: the round scores selection rows every k steps and keeps its best state; the state the
  run went on with (its step-0 checkpoint) orders the selection rows' pairs exactly as well as the round logged, at
  least as well as the round's last state, and the held-out measurements of both states are logged."""
  over = {"reward_model.select_every": 1, "reward_model.steps": 4, "reward_model.questions": 16,
          "reward_model.samples_per_question": 4, "reward_model.heldout_questions": 16,
          "reward_model.select_questions": 24, "rollout.max_new_tokens": 24}
  summary = rl.run(config("grpo_orm_toy", sft_run, **over), tmp_path)
  rm = [r for r in metric_rows(tmp_path) if "rm_loss" in r][0]
  assert rm["rm_selected_step"] in (1.0, 2.0, 3.0, 4.0)
  assert rm["rm_select_pair_accuracy"] >= rm["rm_select_pair_accuracy_last"]
  assert rm["rm_select_pair_accuracy"] == pytest.approx(_pair_accuracy_on_select_rows(
      config("grpo_orm_toy", sft_run, **over), tmp_path), abs=1e-9)
  if rm["rm_selected_step"] == 4.0:  # the last state was kept: one model, one measurement
    assert rm["rm_heldout_pair_accuracy_last"] == rm["rm_heldout_pair_accuracy"]
  assert summary["reward_model"]["selected_step"] == [rm["rm_selected_step"]]


def test_reward_model_rows_include_gold_solutions_labelled_right(tmp_path, sft_run):
  """reward_model.gold_solutions: after the policy's samples, one row per training question holding its worked
  solution as the SFT entry tokenizes it (+ EOS), labelled right, every step good; the samples keep their labels.
  The first round's rows, made from the run's initial state (no RL step needed: the round's wiring into a run is
  test_iterative_rl_resets_ref_and_replays_reward_model_data's)."""
  from dsmath.rl.loop import RLLoop
  over = {"reward_model.gold_solutions": True, "reward_model.questions": 6, "rollout.max_new_tokens": 24}
  loop = RLLoop(rl.resolve_rl_config(config("grpo_prm_toy", sft_run, **over)), tmp_path)
  try:
    state = loop._fresh_state(loop._initial_params())
    rows, metrics = loop.rm.new_rows(state, 0, loop.cfg.seed)
    train_q = loop.rm._questions(0, loop.cfg.seed)["train"]
    tok, task = loop.rl.tokenizer, loop.rl.task
    # Math-Shepherd's completions of step prefixes: every chunk (other counts, other budgets) runs one program
    prompt = rows["prompt"][0][rows["prompt_mask"][0] > 0].tolist()
    prefixes = {"a": [rows["completion"][0, :k].tolist() for k in (1, 4, 6)],
                "b": [rows["completion"][0, :k].tolist() for k in (2, 3, 5, 6, 6)]}
    done = {}
    for name, pre in prefixes.items():
      compiled = continuous.rollout._cache_size(), engine.prefill._cache_size()
      done[name] = loop.rm._complete(state["policy"]["params"], [prompt] * len(pre), pre, 2, jax.random.key(3))
      assert [len(texts) for texts in done[name]] == [2] * len(pre)
      assert all(t.startswith(tok.decode(p)) for texts, p in zip(done[name], pre) for t in texts)
    assert (continuous.rollout._cache_size(), engine.prefill._cache_size()) == compiled  # "b" compiled nothing
  finally:
    loop.checkpointer.close()
    loop.rl.close()
  assert metrics["rows_new"] == 12 and metrics["rows_gold"] + metrics["gold_too_long"] == 6, metrics
  assert metrics["rows_gold"] > 0, metrics
  n_gold = int(metrics["rows_gold"])
  assert len(rows["label"]) == 12 + n_gold
  gold = {k: v[12:] for k, v in rows.items()}
  for r in range(n_gold):
    q = int(gold["question"][r, 0])
    assert q in train_q
    ids = list(tok.encode(task.train[q].solution)) + [tok.eos_id]
    n = int(gold["mask"][r].sum())
    assert gold["completion"][r, :n].tolist() == ids and gold["label"][r, 0] == 1.0
    steps = task.train[q].solution.count("\n") + 1
    assert gold["step_mask"][r].sum() == steps and np.all(gold["step_label"][r][gold["step_mask"][r] > 0] == 1.0)
  # the samples' labels are the rule grader's verdicts, as without gold rows
  assert set(np.unique(rows["label"][:12])) <= {0.0, 1.0}
  assert np.all(np.repeat(np.sort(train_q), 2) == rows["question"][:12, 0])


def test_iterative_rl_resets_ref_and_replays_reward_model_data(tmp_path, sft_run):
  """Algorithm 1: pi_ref <- pi_theta at each iteration start; the RM is retrained on fresh samples + 10% replay."""
  summary = rl.run(config("grpo_iterative_toy", sft_run, **{"rl.iterations": 2, "rl.steps": 2}), tmp_path)
  assert summary["steps"] == 4
  rows = metric_rows(tmp_path)
  steps = [r for r in rows if "kl_ref" in r]
  assert [r["iteration"] for r in steps] == [0, 0, 1, 1]
  assert abs(steps[0]["kl_ref"]) < 1e-6 and abs(steps[2]["kl_ref"]) < 1e-6  # first step of an iteration: pi = pi_ref
  assert steps[1]["kl_ref"] > 0 or steps[3]["kl_ref"] > 0  # within an iteration the policy moves away
  rm = [r for r in rows if "rm_loss" in r]
  assert [r["step"] for r in rm] == [0, 2]  # before RL, then after iteration 0 (the last one's would go unused)
  assert rm[0]["rm_rows_replay"] == 0 and rm[1]["rm_rows_replay"] > 0
  assert abs(rm[1]["rm_replay_share"] - 0.1) < 0.02, rm[1]
  # the checkpoint keeps every round's rows as replay data, the first round's first
  ckpt = rl_checkpointer(tmp_path / "checkpoints")
  _, arrays = ckpt.restore_host(4)
  ckpt.close()
  n_new = int(rm[0]["rm_rows_new"])
  assert len(arrays["replay/completion"]) == n_new + int(rm[1]["rm_rows_new"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grpo_raises_training_reward_of_an_sft_policy(tmp_path, sft_run, seed):
  """On each of three RL seeds, 12 GRPO steps on 8 questions (all 8 every step, G = 8) raise the accuracy of samples
  on them by more than 0.1 (mean of the last 3 steps over the first 3). Over 3 SFT parents x 4 RL seeds on 2 cores,
  one core and AVX2 (the slow tests/test_rl_learning_trajectories.py) the smallest gain measured was +0.167."""
  rl.run(grpo_learning_config(sft_run, seed), tmp_path)
  first, last, acc = rollout_accuracy_gain(tmp_path)
  print(f"GRPO rollout accuracy per step: {np.round(acc, 3).tolist()}")
  assert 0.05 < first < 0.95, acc  # partly right: the groups carry signal
  assert last > first + 0.1, acc


def test_held_out_evaluation_leaves_training_unchanged(tmp_path, sft_run):
  """eval.every = 2 over 3 steps: held-out rows at steps 0, 2 and 3; evaluation draws from keys of its own, so the
  trained policy and the training metrics equal a run without it."""
  evald = rl.run(config("grpo_toy", sft_run, **{"rl.steps": 3, "eval.every": 2, "eval.num_questions": 8,
                                               "eval.samples": 2}), tmp_path / "eval")
  plain = rl.run(config("grpo_toy", sft_run, **{"rl.steps": 3}), tmp_path / "plain")
  evals = [r for r in metric_rows(tmp_path / "eval") if r.get("evaluation")]
  assert [r["step"] for r in evals] == [0, 2, 3]
  assert evald["test_accuracy_greedy_before"] == evals[0]["test_accuracy_greedy"]
  assert evald["test_accuracy_sampled_after"] == evals[-1]["test_accuracy_sampled"]
  gain = evald["test_accuracy_greedy_gain"]
  assert gain["gain"] == pytest.approx(evals[-1]["test_accuracy_greedy"] - evals[0]["test_accuracy_greedy"])
  assert gain["gain_ci95"][0] <= gain["gain"] <= gain["gain_ci95"][1]
  train = lambda d: [{k: v for k, v in r.items() if not k.endswith("_s") and k != "tokens_per_s"}  # noqa: E731
                     for r in metric_rows(d) if not r.get("evaluation")]
  assert train(tmp_path / "eval") == train(tmp_path / "plain")
  a, b = load_run(tmp_path / "eval").load_params(), load_run(tmp_path / "plain").load_params()
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert plain["status"] == "completed"


def test_public_rl_step_keeps_the_batch_on_the_device(sft_run):
  """rl_step(state, questions) is the public step. Under jax.transfer_guard("disallow") no array crosses between
  host and device implicitly: only the explicit copies (completion tokens for the grader, rewards back) happen."""
  run = rl.resolve_rl_config(config("grpo_toy", sft_run))
  parent = load_run(sft_run)
  task = rl.build_task(run.config.task, parent.load_tokenizer(), 0)
  rl_step = rl.RLStep(run, parent.model, task)
  try:
    state = rl_step.init_state(parent.load_params(), seed=0)
    state, metrics = rl_step(state, np.arange(2))  # compiles
    with jax.transfer_guard("disallow"):
      state, metrics = rl_step(state, np.arange(2, 4))
    assert metrics["skipped"] == 0 and math.isfinite(metrics["loss"]) and int(state["step"]) == 2
  finally:
    rl_step.close()


def test_config_errors_name_the_key(tmp_path, sft_run):
  c = config("grpo_toy", sft_run)
  c.loss.bogus = 1
  with pytest.raises(ConfigError, match=r"config\.loss\.bogus"):
    rl.run(c, tmp_path)
  d = config("grpo_toy", sft_run).to_dict()  # a config file may build plain dicts, which ConfigDict does not type
  d["task"]["synthetic"]["difficulty"]["max_number"] = "9"
  with pytest.raises(ConfigError, match=r"config\.task\.synthetic\.difficulty\.max_number must be int"):
    rl.run(d, tmp_path)
  with pytest.raises(ConfigError, match=r"config\.rl\.method='reinforce' is unknown"):
    rl.run(config("grpo_toy", sft_run, **{"rl.method": "reinforce"}), tmp_path)
  with pytest.raises(ConfigError, match="process reward"):
    rl.resolve_rl_config(config("ppo_toy", sft_run, **{"rl.reward": "step_check"}))
  with pytest.raises(ConfigError, match="finite"):
    rl.resolve_rl_config(config("grpo_toy", sft_run, **{"optimizer.peak_lr": float("nan")}))
  with pytest.raises(ConfigError, match="init_from"):  # the model comes from the parent run, not the config
    rl.run(config("grpo_toy", sft_run, **{"model.num_layers": 3}), tmp_path)
  assert not (tmp_path / "checkpoints").exists()


def test_method_defaults_fill_only_what_the_config_leaves_open(sft_run):
  gspo = rl.resolve_rl_config(config("gspo_toy", sft_run))
  assert (gspo.loss.clip_eps, gspo.loss.eps_high, gspo.loss.beta) == (3e-4, 4e-4, 0.0) and not gspo.needs_reference
  dapo = rl.resolve_rl_config(config("dapo_toy", sft_run))
  assert dapo.loss.eps_high == 0.28 and dapo.loss.aggregation == "token" and dapo.dynamic_sampling
  assert dapo.overlong_buffer == 16 // 4
  mine = rl.resolve_rl_config(config("dapo_toy", sft_run, **{"loss.clip_eps_high": 0.3, "loss.beta": 0.01}))
  assert mine.loss.eps_high == 0.3 and mine.loss.beta == 0.01 and mine.needs_reference
  ps = rl.resolve_rl_config(config("grpo_toy", sft_run, **{"rl.reward": "prm"}))
  assert ps.estimator == "grpo_process" and ps.needs_reward_model  # GRPO + PS is first-class


def test_an_update_raises_the_log_probability_of_positively_advantaged_completions(rl_parent_run):
  """The loop's mechanism, checked directly: after one GRPO update on a batch, completions with positive advantage are
  more likely under the new policy and those with negative advantage less likely (the mean log-prob per token of
  each, re-scored by teacher forcing), the paper's gradient coefficient at work."""
  from dsmath.rl import policy
  run = rl.resolve_rl_config(config("grpo_toy", rl_parent_run, **{"rollout.prompts_per_step": 8,
                                                                  "rollout.group_size": 8, "optimizer.peak_lr": 1e-3,
                                                                  "loss.beta": 0.0}))
  parent = load_run(rl_parent_run)
  task = rl.build_task(run.config.task, parent.load_tokenizer(), 0)
  step = rl.RLStep(run, parent.model, task)
  try:
    state = step.init_state(parent.load_params(), seed=0)
    key = jax.random.key(0)
    exp = step.finish(step.online_experience(state, np.arange(8), key))
    adv = np.asarray(exp.batch["advantages"])[:, 0]
    assert (adv > 0).any() and (adv < 0).any(), "the batch needs both signs: pick other questions"
    b = {k: exp.batch[k] for k in ("prompt", "prompt_mask", "completion", "mask")}
    score = jax.jit(lambda p: policy.completion_logprobs(parent.model, p, b["prompt"], b["prompt_mask"],
                                                         b["completion"], b["mask"])[0])
    mask = np.asarray(b["mask"])
    per_token = lambda p: np.asarray(score(p)).sum(1) / mask.sum(1)  # noqa: E731
    before = per_token(state["policy"]["params"])
    state, _ = step.update(state, exp)
    after = per_token(state["policy"]["params"])
    up, down = (after - before)[adv > 0], (after - before)[adv < 0]
    print(f"mean change of log-prob per token: positive advantage {up.mean():+.4f}, negative {down.mean():+.4f}")
    assert up.mean() > 0 > down.mean()
  finally:
    step.close()


def test_dynamic_sampling_refills_groups_without_signal(rl_parent_run):
  """DAPO's dynamic sampling: groups whose G rewards are all equal are dropped and replaced by groups of new
  questions from the stream until the batch is full (or the refill budget is spent, then padded with masked rows).
  The first batch's 4 questions get a gold answer no completion can reach, so all 4 groups are dropped and a redraw
  must happen; the redrawn questions (the parent is partly right on them, G = 8) give groups with signal."""
  run = rl.resolve_rl_config(config("dapo_toy", rl_parent_run, **{"rollout.prompts_per_step": 4,
                                                                  "rollout.group_size": 8,
                                                                  "reward.overlong_buffer": 0}))
  parent = load_run(rl_parent_run)
  task = rl.build_task(run.config.task, parent.load_tokenizer(), 0)
  unreachable = np.arange(4)
  task = dataclasses.replace(task, train=tuple(dataclasses.replace(q, answer="-987654321") if i in unreachable else q
                                               for i, q in enumerate(task.train)))
  step = rl.RLStep(run, parent.model, task)
  drawn = []

  def refill(n):
    drawn.append(n)
    return rl.stream_indices(1, len(task.train), 4 * len(drawn), n)

  try:
    state = step.init_state(parent.load_params(), seed=0)
    exp = step.dynamic_sample(state, unreachable, jax.random.key(1), refill)
    m = exp.metrics
    print({k: m[k] for k in ("refill_rounds", "sampled_groups", "kept_groups", "padded_groups")})
    groups = exp.rewards.reshape(-1, 8)
    live = np.asarray(exp.batch["mask"]).sum(1).reshape(-1, 8).sum(1) > 0
    assert len(groups) == 4  # a full batch of 4 groups, always
    assert m["refill_rounds"] >= 1 and drawn == [4] * int(m["refill_rounds"])  # the dropped batch was redrawn
    assert m["sampled_groups"] == 4 * (1 + m["refill_rounds"])
    assert m["kept_groups"] > 0 and m["kept_groups"] + m["padded_groups"] == 4
    assert all(g.max() > g.min() for g, keep in zip(groups, live) if keep)  # every trained group carries signal
    assert int(live.sum()) == int(m["kept_groups"])  # padding is masked out of the loss
    trained = exp.question_index.reshape(-1, 8)[live, 0]
    assert not set(trained) & set(unreachable)  # none of the dropped questions is trained on
  finally:
    step.close()


def test_a_relative_workdir_runs(tmp_path, sft_run, monkeypatch):
  """`experiments.run ... --workdir runs/grpo` (README): orbax needs absolute paths; the job makes them so."""
  from dsmath.jobs import run_job
  monkeypatch.chdir(tmp_path)
  summary = run_job(config("grpo_toy", sft_run), "runs/grpo")
  assert summary["status"] == "completed" and (tmp_path / "runs" / "grpo" / "checkpoints").is_dir()
  assert load_run("runs/grpo").step == 1
