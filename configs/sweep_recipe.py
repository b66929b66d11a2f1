"""The default toy recipe (configs/toy.py, README's first command) over seeds 0, 1, 2: the numbers README quotes.

  python -m experiments.sweep --config configs/sweep_recipe.py
Each cell runs the whole recipe with its pre-training, SFT and GRPO stages seeded by the cell's seed (the task, the
teacher's SFT set and the corpus are the recipe's own, the same for every seed). Table: the GRPO stage's held-out
accuracy (200 synthetic test questions, greedy and 4 samples at T = 0.7) before and after RL with the paired gain,
and the recipe's wall time. Curves over RL steps: the reward, the fraction of groups without learning signal (zero
reward variance), the policy's entropy, the KL to the reference, held-out accuracy.
"""
from configs.sweep_fig5 import accuracy_metrics
from dsmath.config import config_dict
from dsmath.sweep import SweepConfig

SEEDS = (0, 1, 2)
GRPO = "grpo/metrics.jsonl"


def _curve(key: str, title: str) -> dict:
  return {"name": key, "stage": "recipe", "file": GRPO, "key": key, "title": title}


def get_config():
  c = config_dict(SweepConfig)
  c.name = "The toy recipe over seeds (README's numbers)"
  c.sweep_dir = "runs/sweep_recipe"
  c.results_dir = "results/recipe"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "recipe", "config": "configs/toy.py", "overrides": {}}]
  c.axes = [{"name": "seed", "values": list(SEEDS),
             "keys": ["recipe/stages.pretrain.seed", "recipe/stages.sft.seed", "recipe/stages.grpo.seed"]}]
  metrics = [{**m, "stage": "recipe", "summary": "grpo/summary.json"} for m in accuracy_metrics()]
  metrics.append({"name": "recipe wall time (s)", "stage": "recipe", "path": "job_seconds", "lower_is_better": True})
  c.aggregate = {"group_by": [], "metrics": metrics, "curves": [
      _curve("reward_mean", "GRPO training reward (mean over the step's rollouts)"),
      _curve("zero_std_group_fraction", "Groups with zero reward variance (no learning signal)"),
      _curve("entropy", "Policy entropy (nats/token) of the rollouts"),
      _curve("kl_ref", "KL(pi_theta || pi_ref) estimate per token (the pull toward the SFT model)"),
      _curve("test_accuracy_greedy", "Held-out greedy accuracy vs RL step"),
      _curve("test_accuracy_sampled", "Held-out sampled accuracy (T = 0.7) vs RL step")]}
  return c
