"""Why GRPO with a learned reward model collapsed the policy: one-seed probes, each against its control, on the
validation split (settings are chosen there; the test split is only for reported numbers).

  python -m experiments.sweep --config configs/sweep_rm_diagnosis.py     # after configs/sweep_fig5.py (its setup)
Every cell starts from seed 0's SFT model of the Figure 5 sweep (runs/sweep_fig5/_setup/base_s0/sft) with the recipe's
RL settings (configs/toy.py:rl:<config>: 200 steps of 8 questions x G 8 at lr 3e-4, beta 0.04) and changes one thing:
  rule step checker: the control for process supervision, and the same with a drift of -/+0.02 per step position
    added to its scores (the drift a reward model can have along a solution);
  learned PRM / ORM as the paper runs them (configs/grpo_prm_paper_toy.py / grpo_orm_paper_toy.py: reward models of
    32 questions x 2 samples, 50 steps), then one change each: groups whose rule verdicts agree zeroed, lr
    1e-4, KL weight 0.2, Math-Shepherd soft labels, the rule outcome added at the last token, 16x the reward-model
    data, the credit assignments (group-relative, min form, clip, delta), and advantages not divided by the group's
    std (GRPO's std turns a reward model's small score differences inside a group into unit-size advantages).
"""
import os

from configs.sweep_fig5 import CURVES, accuracy_metrics
from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

SFT = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup", "base_s0", "sft")
BIG_RM = {"rl/reward_model.questions": 256, "rl/reward_model.samples_per_question": 4, "rl/reward_model.steps": 200}


def _prm(**kv):  # the paper-faithful learned PRM, one change
  return {"rl:config": "configs/toy.py:rl:grpo_prm_paper_toy", **kv}


def _orm(**kv):  # the paper-faithful learned ORM, one change
  return {"rl:config": "configs/toy.py:rl:grpo_orm_paper_toy", **kv}


PROBES = {
    "step_check": {"rl:config": "configs/toy.py:rl:grpo_ps_toy"},
    "step_check_drift_down": {"rl:config": "configs/toy.py:rl:grpo_ps_toy", "rl/reward.step_drift": -0.02},
    "step_check_drift_up": {"rl:config": "configs/toy.py:rl:grpo_ps_toy", "rl/reward.step_drift": 0.02},
    "prm": _prm(),
    "prm_zero_unanimous": _prm(**{"rl/advantage.zero_unanimous_groups": True}),
    "prm_lr1e-4": _prm(**{"rl/optimizer.peak_lr": 1e-4}),
    "prm_beta0.2": _prm(**{"rl/loss.beta": 0.2}),
    "prm_soft_labels": _prm(**{"rl/reward_model.label": "soft"}),
    "prm_verifier": _prm(**{"rl/reward.verifier_weight": 1.0}),
    "prm_big_rm": _prm(**BIG_RM),
    "prm_relative": _prm(**{"rl/rl.estimator": "grpo_process_relative"}),
    "prm_min": _prm(**{"rl/advantage.credit": "min"}),
    "prm_relative_min": _prm(**{"rl/rl.estimator": "grpo_process_relative", "rl/advantage.credit": "min"}),
    "prm_relative_clip": _prm(**{"rl/rl.estimator": "grpo_process_relative", "rl/advantage.credit": "clip"}),
    "prm_relative_delta": _prm(**{"rl/rl.estimator": "grpo_process_relative", "rl/advantage.credit": "delta"}),
    "prm_relative_no_std": _prm(**{"rl/rl.estimator": "grpo_process_relative", "rl/advantage.scale_std": False}),
    "orm": _orm(),
    "orm_no_std": _orm(**{"rl/advantage.scale_std": False}),
    "orm_lr1e-4": _orm(**{"rl/optimizer.peak_lr": 1e-4}),
    "orm_beta0.2": _orm(**{"rl/loss.beta": 0.2}),
    "orm_big_rm": _orm(**BIG_RM),
}

WINDOW = [("rollouts_first", "first 20 steps"), ("rollouts_last", "last 20 steps")]


def window_metrics() -> list:
  out = []
  for key, label in (("accuracy", "rollout rule accuracy"), ("proxy_reward_mean", "rollout learned reward"),
                     ("kl_ref", "KL to pi_ref"), ("adv_share_unanimous", "|A| share in unanimous groups"),
                     ("steps_mean", "steps per output"),
                     ("unformatted_fraction", "outputs without a boxed answer")):
    for part, when in WINDOW:
      out.append({"name": f"{label}, {when}", "stage": "rl", "path": f"{part}.{key}", "paired": False,
                  "optional": True})  # a rule-reward run has no learned reward
  return out


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Learned reward models: diagnosis probes (seed 0, validation split)"
  c.sweep_dir = "runs/sweep_rm_diagnosis"
  c.results_dir = "results/rm_diagnosis"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/toy.py:rl:grpo_prm_paper_toy",
               "overrides": {"init_from": SFT, "seed": 0, "task.synthetic.heldout_split": "validation",
                             "eval.every": 50}}]
  c.axes = [{"name": "probe", "levels": [{"name": n, "set": s} for n, s in PROBES.items()]}]
  c.aggregate = {"group_by": ["probe"],
                 "metrics": accuracy_metrics() + [
                     {"name": "reward-model label accuracy (held-out)", "stage": "rl",
                      "path": "reward_model.first_heldout_label_accuracy", "paired": False, "optional": True}] + window_metrics(),
                 "curves": CURVES + [
                     {"name": "proxy_reward_mean", "stage": "rl", "file": "metrics.jsonl", "key": "proxy_reward_mean",
                      "title": "Learned reward of the rollouts vs RL step"},
                     {"name": "adv_share_unanimous", "stage": "rl", "file": "metrics.jsonl",
                      "key": "adv_share_unanimous", "title": "Share of |A| in groups the rule grader cannot split"}]}
  return c
