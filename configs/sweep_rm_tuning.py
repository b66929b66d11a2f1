"""Choosing the learned reward models' settings on the validation split (seed 0's SFT model of the Figure 5 sweep):
configs/grpo_orm_toy.py and configs/grpo_prm_toy.py as they stand, and one change each.

  python -m experiments.sweep --config configs/sweep_rm_tuning.py     # after configs/sweep_fig5.py (its setup)
"""
import os

from configs.sweep_fig5 import CURVES, accuracy_metrics
from configs.sweep_rm_diagnosis import window_metrics
from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

SFT = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup", "base_s{seed}", "sft")
ORM, PRM = "configs/toy.py:rl:grpo_orm_toy", "configs/toy.py:rl:grpo_prm_toy"
# grpo_orm_toy's reward model as it stood when this sweep ran (configs/sweep_rm_selection.py chose the later one)
EARLIER_ORM = {"rl/reward_model.lr": 1e-3, "rl/reward_model.steps": 400, "rl/reward_model.select_every": 0}

CANDIDATES = {
    "orm": {"rl:config": ORM},
    "orm_std": {"rl:config": ORM, "rl/advantage.scale_std": True},
    "orm_lr1e-4": {"rl:config": ORM, "rl/optimizer.peak_lr": 1e-4},
    "orm_two_iterations": {"rl:config": ORM, "rl/rl.iterations": 2, "rl/rl.steps": 100},
    "orm_lr1e-4_iter4": {"rl:config": ORM, "rl/optimizer.peak_lr": 1e-4, "rl/rl.iterations": 4, "rl/rl.steps": 50},
    "orm_lr1e-4_binary": {"rl:config": ORM, "rl/optimizer.peak_lr": 1e-4, "rl/reward_model.score": "binary"},
    "orm_iter4_binary": {"rl:config": ORM, "rl/rl.iterations": 4, "rl/rl.steps": 50,
                         "rl/reward_model.score": "binary"},
    "orm_pair_lr1e-4": {"rl:config": ORM, "rl/optimizer.peak_lr": 1e-4, "rl/reward_model.pairwise_weight": 1.0},
    "orm_pair_lr1e-4_iter4": {"rl:config": ORM, "rl/optimizer.peak_lr": 1e-4, "rl/reward_model.pairwise_weight": 1.0,
                              "rl/rl.iterations": 4, "rl/rl.steps": 50},
    "prm_lr1e-4_iter4": {"rl:config": PRM, "rl/optimizer.peak_lr": 1e-4, "rl/rl.iterations": 4, "rl/rl.steps": 50},
    "orm_pair_iter4": {"rl:config": ORM, "rl/reward_model.pairwise_weight": 1.0, "rl/rl.iterations": 4,
                       "rl/rl.steps": 50},
    "orm_binary": {"rl:config": ORM, "rl/reward_model.score": "binary"},
    "orm_binary_std": {"rl:config": ORM, "rl/reward_model.score": "binary", "rl/advantage.scale_std": True},
    "prm_binary": {"rl:config": PRM, "rl/reward_model.score": "binary"},
    "prm": {"rl:config": PRM},
    "prm_delta": {"rl:config": PRM, "rl/advantage.credit": "delta"},
    "prm_lr1e-4": {"rl:config": PRM, "rl/optimizer.peak_lr": 1e-4},
    "prm_two_iterations": {"rl:config": PRM, "rl/rl.iterations": 2, "rl/rl.steps": 100},
}


CANDIDATES = {name: {**EARLIER_ORM, **cell} if cell["rl:config"] == ORM else cell for name, cell in CANDIDATES.items()}


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Learned reward models: choosing the settings (validation split)"
  c.sweep_dir = "runs/sweep_rm_tuning"
  c.results_dir = "results/rm_tuning"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": ORM,
               "overrides": {"task.synthetic.heldout_split": "validation", "eval.every": 50,
                             "reward_model.replay_fraction": 0.1}}]
  c.axes = [{"name": "setting", "levels": [{"name": n, "set": s} for n, s in CANDIDATES.items()]},
            {"name": "seed", "levels": [{"name": str(s), "set": {"rl/seed": s, "rl/init_from": SFT.format(seed=s)}}
                                        for s in (0,)]}]
  c.aggregate = {"group_by": ["setting"],
                 "metrics": accuracy_metrics() + [
                     {"name": "reward-model label accuracy (held-out), first round", "stage": "rl",
                      "path": "reward_model.first_heldout_label_accuracy", "paired": False}] + window_metrics(),
                 "curves": CURVES}
  return c
