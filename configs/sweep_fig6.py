"""Figure 6 at toy scale: iterative RL (2 iterations; the process reward model retrained between them on fresh policy
samples with 10% replay of its earlier data, pi_ref reset) against one iteration with the same number of RL steps,
5 seeds.

  python -m experiments.sweep --config configs/sweep_fig6.py      # after configs/sweep_fig5.py (its setup)
GRPO with a learned process reward model (rl.reward = "prm": a scalar head on the policy's body, Math-Shepherd labels
from 4 completions per step prefix). Every cell of seed s starts from the Figure 5 sweep's SFT model of that seed
(runs/sweep_fig5/_setup/base_s<s>/sft), so both arms share one SFT policy. Reported beside accuracy: the reward
model's step-label accuracy on labelled samples of questions it did not train on, after each round.
"""
import os

from configs.sweep_fig5 import CURVES, SEEDS, accuracy_metrics
from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

TOTAL_STEPS = 200
FIG5_SETUP = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup")


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Figure 6 (toy): iterative GRPO with a learned PRM, 2 iterations vs 1"
  c.sweep_dir = "runs/sweep_fig6"
  c.results_dir = "results/fig6"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/toy.py:rl:grpo_prm_toy",
               "overrides": {"reward_model.replay_fraction": 0.1, "eval.every": 50}}]
  c.axes = [
      {"name": "iterations", "levels": [
          {"name": "one", "set": {"rl/rl.iterations": 1, "rl/rl.steps": TOTAL_STEPS}},
          {"name": "two", "set": {"rl/rl.iterations": 2, "rl/rl.steps": TOTAL_STEPS // 2}},
          # Diagnosis: the same single iteration with a reward model trained on 16x the labelled samples
          # (256 questions x 4 samples) for 4x the steps: does a better PRM stop the policy from exploiting it?
          {"name": "one_big_rm", "set": {"rl/rl.iterations": 1, "rl/rl.steps": TOTAL_STEPS,
                                         "rl/reward_model.questions": 256, "rl/reward_model.samples_per_question": 4,
                                         "rl/reward_model.steps": 200}},
      ]},
      {"name": "seed", "levels": [{"name": str(s), "set": {"rl/seed": s,
                                                            "rl/init_from": os.path.join(FIG5_SETUP, f"base_s{s}",
                                                                                         "sft")}} for s in SEEDS]},
  ]
  c.aggregate = {
      "group_by": ["iterations"],
      "metrics": accuracy_metrics() + [
          {"name": "PRM step-label accuracy (held-out), first round", "stage": "rl",
           "path": "reward_model.first_heldout_label_accuracy", "paired": False},  # one iteration's, shared
          {"name": "PRM step-label accuracy (held-out), last round", "stage": "rl",
           "path": "reward_model.last_heldout_label_accuracy"}],
      "curves": CURVES,
      "compare_to": "iterations=one"}
  return c
