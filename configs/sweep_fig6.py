"""Figure 6 at toy scale: iterative RL (2 iterations; the reward model retrained between them on fresh policy
samples with 10% replay of its earlier data) against one iteration with the same total number of RL steps, 3 seeds.

  python -m experiments.sweep --config configs/sweep_fig6.py
GRPO with a learned process reward model (rl.reward = "prm"; dsmath.rl trains it, rl.reward_model.replay_fraction).
Every cell of seed s starts from the Figure 5 sweep's SFT policy of that seed (runs/sweep_fig5/_setup/sft_s<s>,
written by the setup of configs/sweep_fig5.py, which must have run first), so both arms share one SFT policy.
Table: held-out synthetic test accuracy after RL (64 test problems, EVAL_SAMPLES samples each); curves: that held-out
accuracy every EVAL_EVERY RL steps, and the training-rollout accuracy (rule-graded) per RL step.
"""
import os

import ml_collections

from dsmath.paths import REPO_ROOT

SEEDS = (0, 1, 2)
TOTAL_STEPS = 20
EVAL_EVERY, EVAL_SAMPLES = 2, 4
FIG5 = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5")


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "Figure 6 (toy): iterative RL vs one iteration"
  c.sweep_dir = "runs/sweep_fig6"
  c.results_dir = "results/fig6"
  c.parallel = 2
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/grpo_toy.py",
               "overrides": {"rl.reward": "prm", "rl.reward_model.replay_fraction": 0.1, "rl.sft_warmup_steps": 0,
                             "rl.eval_every": EVAL_EVERY, "rl.eval_samples": EVAL_SAMPLES}}]
  c.axes = [
      {"name": "iterations", "levels": [
          {"name": "one", "set": {"rl/rl.iterations": 1, "rl/rl.steps": TOTAL_STEPS}},
          {"name": "two", "set": {"rl/rl.iterations": 2, "rl/rl.steps": TOTAL_STEPS // 2}},
      ]},
      {"name": "seed", "levels": [
          {"name": str(s), "set": {"rl/seed": s, "rl/init_from": os.path.join(FIG5, "_setup", f"sft_s{s}"),
                                   "rl/tokenizer": os.path.join(FIG5, "_setup", f"sft_s{s}", "tokenizer", "spm.model")}}
          for s in SEEDS]},
  ]
  c.aggregate = {
      "group_by": ["iterations"],
      "metrics": [{"name": "test accuracy after RL", "stage": "rl", "path": "test_accuracy_after"},
                  {"name": "gain over the SFT policy", "stage": "rl", "path": "test_accuracy_gain"},
                  {"name": "test accuracy of the SFT policy", "stage": "rl", "path": "test_accuracy_before"}],
      "curves": [{"name": "test_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "test_accuracy",
                  "title": "Held-out test accuracy vs RL step"},
                 {"name": "train_rollout_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "accuracy",
                  "title": "Training-rollout accuracy vs RL step"}],
  }
  return c
