"""Learned reward models alone: how well each reward-model recipe orders within-question (right, wrong) pairs of
fresh samples, on each seed's SFT model, and what choosing the round's state by that order (reward_model.select_every)
buys over keeping the last one. No RL: one policy step after the reward model's first round; the metrics are the
round's (summary.json "reward_model").

  python -m experiments.sweep --config configs/sweep_rm_selection.py     # after configs/sweep_fig5.py (its setup)
"""
import os

from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

SFT = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup", "base_s{seed}", "sft")
ORM, PRM = "configs/toy.py:rl:grpo_orm_toy", "configs/toy.py:rl:grpo_prm_toy"
SEEDS = (0, 1, 2, 3, 4)

# The earlier grpo_orm_toy's reward model (lr 1e-3, 400 steps), which the recipes below change
EARLIER_ORM = {"rl:config": ORM, "rl/reward_model.lr": 1e-3, "rl/reward_model.steps": 400}
RECIPES = {
    "orm": EARLIER_ORM,
    "orm_lr3e-4_800": {"rl:config": ORM, "rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 800},
    "orm_lr1e-4_800": {"rl:config": ORM, "rl/reward_model.lr": 1e-4, "rl/reward_model.steps": 800},
    "orm_lr3e-3": {**EARLIER_ORM, "rl/reward_model.lr": 3e-3},
    # 2.8x the questions, 8 samples each, trained for their order (whole questions per batch) 3x as long
    "orm_big_pair": {"rl:config": ORM, "rl/reward_model.questions": 1400, "rl/reward_model.samples_per_question": 8,
                     "rl/reward_model.pairwise_weight": 1.0, "rl/reward_model.batch": 64,
                     "rl/reward_model.steps": 1200},
    "orm_gold": {"rl:config": ORM, "rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 800,
                 "rl/reward_model.gold_solutions": True},
    "orm_gold_pair": {"rl:config": ORM, "rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 800,
                      "rl/reward_model.gold_solutions": True, "rl/reward_model.pairwise_weight": 1.0},
    "prm": {"rl:config": PRM},
    "prm_gold": {"rl:config": PRM, "rl/reward_model.gold_solutions": True},
    "prm_lr3e-4_400": {"rl:config": PRM, "rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 400},
    "prm_1000q_lr3e-4_800": {"rl:config": PRM, "rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 800,
                             "rl/reward_model.questions": 1000},
}


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Learned reward models alone: within-question pair accuracy, last state vs selected state"
  c.sweep_dir = "runs/sweep_rm_selection"
  c.results_dir = "results/rm_selection"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": ORM,
               "overrides": {"rl.steps": 1, "eval.num_questions": 0, "reward_model.select_every": 50}}]
  c.axes = [{"name": "recipe", "levels": [{"name": n, "set": s} for n, s in RECIPES.items()]},
            {"name": "seed", "levels": [{"name": str(s), "set": {"rl/seed": s, "rl/init_from": SFT.format(seed=s)}}
                                        for s in SEEDS]}]
  rm = "reward_model."
  c.aggregate = {"group_by": ["recipe"], "metrics": [
      {"name": "held-out pair accuracy, selected state", "stage": "rl", "path": rm + "first_heldout_pair_accuracy"},
      {"name": "held-out pair accuracy, last state", "stage": "rl", "path": rm + "heldout_pair_accuracy_last.0"},
      {"name": "held-out label accuracy, selected state", "stage": "rl", "path": rm + "first_heldout_label_accuracy"},
      {"name": "held-out label accuracy, last state", "stage": "rl", "path": rm + "heldout_label_accuracy_last.0"},
      {"name": "selection pair accuracy, selected state", "stage": "rl", "path": rm + "select_pair_accuracy.0",
       "paired": False},
      {"name": "selected step", "stage": "rl", "path": rm + "selected_step.0", "paired": False}]}
  return c
