"""Why the earlier toy recipe's GRPO did not learn, part 2: the step budget and the learning rate, on the validation
split, from the recipe's SFT model (seed 0: the Figure 5 sweep's setup runs/sweep_fig5/_setup/base_s0/sft).

  python -m experiments.sweep --config configs/sweep_rl_budget.py      # after configs/sweep_fig5.py (its setup)
GRPO (configs/toy.py:rl:grpo_toy, 8 questions x G 8) with held-out accuracy measured on 200 validation questions,
greedy and 4 samples at T = 0.7, before and after RL; the recipe's setting (200 steps at lr 3e-4) was chosen from
this grid. The earlier recipe ran 20 steps at 1e-4.
"""
import os

from configs.sweep_fig5 import accuracy_metrics
from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

SFT = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup", "base_s0", "sft")


def get_config():
  c = config_dict(SweepConfig)
  c.name = "RL diagnosis 2: GRPO steps x learning rate (validation split)"
  c.sweep_dir = "runs/sweep_rl_budget"
  c.results_dir = "results/rl_budget"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/toy.py:rl:grpo_toy",
               "overrides": {"init_from": SFT, "task.synthetic.heldout_split": "validation", "eval.every": 0}}]
  c.axes = [{"name": "steps", "values": [20, 100, 200], "keys": ["rl/rl.steps"]},
            {"name": "lr", "values": [1e-4, 3e-4], "keys": ["rl/optimizer.peak_lr"]}]
  c.aggregate = {"group_by": ["steps", "lr"], "metrics": accuracy_metrics()}
  return c
