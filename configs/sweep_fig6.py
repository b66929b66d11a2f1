"""Figure 6 at toy scale: iterative RL (2 iterations; the reward model retrained between them on fresh policy
samples with 10% replay of its earlier data) against one iteration with the same total number of RL steps, 3 seeds.

  python -m experiments.sweep --config configs/sweep_fig6.py
GRPO with a learned process reward model (rl.reward = "prm"; dsmath.rl trains it, rl.reward_model.replay_fraction).
"""
import ml_collections

SEEDS = (0, 1, 2)
TOTAL_STEPS = 20


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "Figure 6 (toy): iterative RL vs one iteration"
  c.sweep_dir = "runs/sweep_fig6"
  c.results_dir = "results/fig6"
  c.parallel = 2
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/grpo_toy.py",
               "overrides": {"rl.reward": "prm", "rl.reward_model.replay_fraction": 0.1, "rl.eval_every": 5}}]
  c.axes = [
      {"name": "iterations", "levels": [
          {"name": "one", "set": {"rl/rl.iterations": 1, "rl/rl.steps": TOTAL_STEPS}},
          {"name": "two", "set": {"rl/rl.iterations": 2, "rl/rl.steps": TOTAL_STEPS // 2}},
      ]},
      {"name": "seed", "values": list(SEEDS), "keys": ["rl/seed"]},
  ]
  c.aggregate = {
      "group_by": ["iterations"],
      "metrics": [{"name": "test accuracy after RL", "stage": "rl", "path": "test_accuracy_after"}],
      "curves": [{"name": "test_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "test_accuracy",
                  "title": "Held-out synthetic accuracy vs RL step"}],
  }
  return c
