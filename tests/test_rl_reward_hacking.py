"""Reward hacking made visible: the over-optimisation check on per-step series, and an RL stage with a learned reward
that logs every rollout's rule verdict beside the reward model's score, the proxy beside the rule accuracy, the
reward model's score by step position and the share of |advantage| in groups the rule grader cannot split."""
import json
import logging
import math
import types

import numpy as np
import pytest

from dsmath import rl
from dsmath.data import synthetic
from dsmath.grading.answers import extract_last_boxed
from dsmath.grading.pool import Grader
from dsmath.rl import overoptimisation
from dsmath.rl.loop import HostState, RLLoop
from dsmath.rl.rollout_log import RolloutLog, read_rollouts
from dsmath.runs import load_run
from tests.rl_configs import METRIC_KEYS, config, heldout_label_accuracy


def test_trailing_mean_against_numpy():
  x = np.random.default_rng(0).random(37)
  got = overoptimisation.trailing_mean(x, 5)
  want = [x[max(0, i - 4):i + 1].mean() for i in range(len(x))]
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_divergent_span_found_with_its_steps_and_means():
  steps = np.arange(1, 101)
  proxy = np.where(steps <= 40, 0.5, 0.5 + 0.01 * (steps - 40))  # rises from step 41
  rule = np.where(steps <= 40, 0.6, 0.6 - 0.008 * (steps - 40))  # falls from step 41
  spans = overoptimisation.divergent_spans(steps, proxy, rule, window=10, min_rise=0.05, min_fall=0.05)
  assert len(spans) == 1
  sp = spans[0]
  # brute force: the first index i with an earlier full window j <= i - 10 whose proxy mean is lower by >= 0.05 and
  # rule mean higher by >= 0.05
  p = overoptimisation.trailing_mean(proxy, 10)
  r = overoptimisation.trailing_mean(rule, 10)
  hits = {i: [j for j in range(9, i - 9) if p[i] - p[j] >= 0.05 and r[j] - r[i] >= 0.05] for i in range(19, 100)}
  first = min(i for i, js in hits.items() if js)
  assert (sp.start, sp.end) == (steps[first], 100)
  j = max(hits[first], key=lambda k: r[k])
  assert sp.proxy_before == pytest.approx(p[j]) and sp.rule_before == pytest.approx(r[j])
  assert sp.rule_after == pytest.approx(r[-1])
  assert "steps" in sp.describe() and f"{sp.start}-{sp.end}" in sp.describe()


def test_a_slow_drift_over_the_run_is_found():
  """Proxy +0.0008 and rule -0.0015 per step: within any 20 steps the changes are below the thresholds, over the
  run they are not."""
  steps = np.arange(1, 201)
  spans = overoptimisation.divergent_spans(steps, 0.6 + 0.0008 * steps, 0.55 - 0.0015 * steps, window=20)
  assert len(spans) == 1 and spans[0].end == 200 and spans[0].rule_before - spans[0].rule_after > 0.05


def test_no_span_when_both_rise_or_the_fall_is_noise():
  steps = np.arange(1, 201)
  rising = 0.4 + 0.002 * steps
  assert overoptimisation.divergent_spans(steps, rising, rising, window=20) == []
  noise = 0.6 + 0.03 * np.random.default_rng(1).standard_normal(200)  # +-0.03 per step, flat on average
  assert overoptimisation.divergent_spans(steps, rising, noise, window=20) == []
  with pytest.raises(ValueError, match="length"):
    overoptimisation.divergent_spans(steps, rising[:-1], noise)


def test_loop_warns_once_per_span_with_its_steps(caplog):
  steps = list(range(1, 201))
  trace = [[s, 0.5 + (0.003 * (s - 100) if s > 100 else 0.0), 0.6 - (0.003 * (s - 100) if s > 100 else 0.0)]
           for s in steps]
  host = HostState(proxy_trace=trace)
  loop = types.SimpleNamespace(total=200)
  with caplog.at_level(logging.WARNING, logger="dsmath.rl.loop"):
    out = RLLoop._overoptimisation(loop, host)
    RLLoop._overoptimisation(loop, host)  # a second check of the same span: no second warning
  warnings = [r.getMessage() for r in caplog.records if "reward hacking" in r.getMessage()]
  assert len(warnings) == 1 and f"steps {out['spans'][0]['start']}-200" in warnings[0]
  assert out["window"] == 20 and out["proxy_last"] > out["proxy_first"] and out["rule_last"] < out["rule_first"]
  assert host.warned_spans == [out["spans"][0]["start"]]


def test_rollout_log_resume_keeps_the_checkpointed_steps(tmp_path):
  log = RolloutLog(tmp_path)
  for s in (1, 2, 3):
    log.write(s, [{"text": f"a{s}"}, {"text": f"b{s}"}])
  log.close()
  log = RolloutLog(tmp_path, keep_through_step=2)  # resumed from the step-2 checkpoint: step 3 runs again
  log.write(3, [{"text": "again"}])
  log.close()
  assert [(r["step"], r["text"]) for r in read_rollouts(tmp_path)] == [(1, "a1"), (1, "b1"), (2, "a2"), (2, "b2"),
                                                                       (3, "again")]
  RolloutLog(tmp_path).close()  # a fresh run in the same directory starts an empty log
  assert read_rollouts(tmp_path) == []


@pytest.fixture(scope="module")
def grader():
  g = Grader(mode="math_verify")
  yield g
  g.close()


# the PRM trained on outcome labels as a noisy-AND over tokens (no Math-Shepherd completions)
NOISY_AND_PRM = {"reward_model.label": "outcome", "reward_model.pool": "product"}


@pytest.mark.parametrize("name,extra_over", [("grpo_orm_toy", {}), ("grpo_prm_toy", {}),
                                             ("grpo_prm_toy", NOISY_AND_PRM)], ids=["orm", "prm", "prm_noisy_and"])
def test_learned_reward_stage_logs_verdicts_beside_scores(tmp_path, rl_parent_run, grader, name, extra_over):
  over = {"rl.steps": 3, "rollout.prompts_per_step": 4, **extra_over}
  summary = rl.run(config(name, rl_parent_run, **over), tmp_path)
  rows = read_rollouts(tmp_path)
  metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = [m for m in metrics if "proxy_reward_mean" in m]
  assert [m["step"] for m in steps] == [1, 2, 3] and len(rows) == 3 * 4 * 4
  # the run's metrics (as every method's in test_rl_loop), and the reward model's round
  extra = ("kl_ref", "step_reward_mean") if name == "grpo_prm_toy" else ("kl_ref",)
  for m in steps:
    assert all(k in m and math.isfinite(m[k]) for k in METRIC_KEYS + extra) and m["skipped"] == 0, m
  rm = [m for m in metrics if "rm_loss" in m]
  assert rm and math.isfinite(rm[0]["rm_loss"]) and rm[0]["rm_replay_share"] == 0.0
  # measured on rows of questions it did not train on; recomputed from the checkpoint the run wrote (the metric is a
  # float32 on device: 1e-6 is far below one label's share)
  assert rm[0]["rm_heldout_label_accuracy"] == pytest.approx(
      heldout_label_accuracy(config(name, rl_parent_run, **over), tmp_path), abs=1e-6)
  cfg = rl.resolve_rl_config(config(name, rl_parent_run)).config
  task = rl.build_task(cfg.task, load_run(rl_parent_run).load_tokenizer(), cfg.seed)
  texts = [r["text"] for r in rows]
  verdicts = grader.submit(texts, [task.train[r["question"]].answer for r in rows], "math_verify").result()
  independent = [float(v) if extract_last_boxed(t) is not None else 0.0 for v, t in zip(verdicts, texts)]
  assert [r["correct"] for r in rows] == independent  # the rule verdict of every rollout, graded again here
  for m in steps:
    mine = [r for r in rows if r["step"] == m["step"]]
    assert m["accuracy"] == pytest.approx(np.mean([r["correct"] for r in mine]))
    assert m["proxy_reward_mean"] == pytest.approx(np.mean([r["rm_score"] for r in mine]), rel=1e-5)
    c = np.array([r["correct"] for r in mine]).reshape(-1, 4)
    a = np.array([r["adv_abs_sum"] for r in mine]).reshape(-1, 4)
    unanimous = (c.max(1) == c.min(1))[:, None]
    assert m["adv_share_unanimous"] == pytest.approx((a * unanimous).sum() / max(a.sum(), 1e-30), abs=1e-5)
    assert m["steps_mean"] == pytest.approx(np.mean([len(synthetic.split_steps(r["text"])[0]) for r in mine]))
    assert m["unformatted_fraction"] == pytest.approx(np.mean([extract_last_boxed(r["text"]) is None for r in mine]))
  if name == "grpo_prm_toy":
    for r in rows:
      assert len(r["step_scores"]) == max(len(synthetic.split_steps(r["text"])[0]), 1)
      assert r["rm_score"] == pytest.approx(np.mean(r["step_scores"]), abs=1e-5)
      if extra_over:  # P(the prefix is right) can only fall along a solution
        assert np.all(np.diff(r["step_scores"]) <= 1e-6), r["step_scores"]
    assert ("rm_step_label_mean" in rm[0]) == (not extra_over)  # Math-Shepherd labels only without label "outcome"
    m = steps[0]
    mine = [r for r in rows if r["step"] == 1]
    assert m["step_reward_pos1"] == pytest.approx(np.mean([r["step_scores"][0] for r in mine]), abs=1e-5)
    assert m["step_reward_last"] == pytest.approx(np.mean([r["step_scores"][-1] for r in mine]), abs=1e-5)
  else:
    assert all("step_scores" not in r for r in rows)
  over = summary["overoptimisation"]
  assert over["proxy"] == "proxy_reward_mean" and over["spans"] == []
  report = (tmp_path / "report.md").read_text()
  assert "Learned reward vs rule accuracy" in report and (tmp_path / "rl_rl.png").exists()
