"""Figure 7 at toy scale: Pass@K and Maj@K (K = 1..64, temperature 0.7) of the SFT model and of the GRPO model
trained from it, on 50 held-out synthetic test problems, 5 seeds.

  python -m experiments.sweep --config configs/sweep_fig7.py      # after configs/sweep_fig5.py
Evaluates the checkpoints of the Figure 5 sweep: the SFT model of seed s (runs/sweep_fig5/_setup/base_s<s>/sft) and
the GRPO+OS policy trained from it (runs/sweep_fig5/method=grpo_os__seed=<s>/rl). A cell is one seed with two `eval`
jobs (configs/fig7_eval.py), one per model, sampling seed s. The grid has one axis (seed) because a checkpoint path
depends on both the model and the seed and an axis level sets fixed values; the table is therefore one row with a
column per (model, metric).
"""
import os

import ml_collections

from configs.fig7_eval import K_VALUES
from dsmath.paths import REPO_ROOT

SEEDS = (0, 1, 2, 3, 4)
FIG5 = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5")
MODELS = (("sft", "SFT"), ("grpo", "GRPO"))


def _checkpoint(model: str, seed: int) -> str:
  if model == "sft":
    return os.path.join(FIG5, "_setup", f"base_s{seed}", "sft")
  return os.path.join(FIG5, f"method=grpo_os__seed={seed}", "rl")


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "Figure 7 (toy): Pass@K and Maj@K, SFT vs GRPO"
  c.sweep_dir = "runs/sweep_fig7"
  c.results_dir = "results/fig7"
  c.parallel = 1
  c.stage_timeout_s = 1800
  c.stages = [{"name": f"eval_{m}", "config": "configs/fig7_eval.py", "overrides": {}} for m, _ in MODELS]
  levels = []
  for s in SEEDS:
    sets = {}
    for m, _ in MODELS:
      sets.update({f"eval_{m}/checkpoint": _checkpoint(m, s), f"eval_{m}/sampling.seed": s})
    levels.append({"name": str(s), "set": sets})
  c.axes = [{"name": "seed", "levels": levels}]
  metrics = []
  for m, label in MODELS:
    for kind in ("maj", "pass"):
      for k in K_VALUES:
        metrics.append({"name": f"{label} {kind.capitalize()}@{k}", "stage": f"eval_{m}",
                        "path": f"synthetic.{kind}@{k}"})
  c.aggregate = {"group_by": [], "metrics": metrics}
  return c
