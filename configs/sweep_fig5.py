"""Figure 5 at toy scale: RFT, Online RFT, GRPO+OS and GRPO+PS on the synthetic task, 3 seeds.

  python -m experiments.sweep --config configs/sweep_fig5.py
Each cell is one RL job (dsmath.rl, configs/*_toy.py) that first runs the same SFT warm-up (rl.sft_warmup_steps,
same seed -> the same SFT policy for every method of a seed; check: equal test_accuracy_before within a seed), then
the method. Table: held-out synthetic test accuracy after RL; curve: rl.eval_every-spaced test accuracy.
"""
import ml_collections

SEEDS = (0, 1, 2)


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "Figure 5 (toy): RFT vs Online RFT vs GRPO+OS vs GRPO+PS"
  c.sweep_dir = "runs/sweep_fig5"
  c.results_dir = "results/fig5"
  c.parallel = 2
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/grpo_toy.py", "overrides": {"rl.eval_every": 5}}]
  c.axes = [
      {"name": "method", "levels": [
          {"name": "rft", "set": {"rl:config": "configs/rft_toy.py"}},
          {"name": "online_rft", "set": {"rl:config": "configs/online_rft_toy.py"}},
          {"name": "grpo_os", "set": {"rl:config": "configs/grpo_toy.py"}},
          {"name": "grpo_ps", "set": {"rl:config": "configs/grpo_ps_toy.py"}},
      ]},
      {"name": "seed", "values": list(SEEDS), "keys": ["rl/seed"]},
  ]
  c.aggregate = {
      "group_by": ["method"],
      "metrics": [
          {"name": "test accuracy after RL", "stage": "rl", "path": "test_accuracy_after"},
          {"name": "test accuracy of the SFT policy", "stage": "rl", "path": "test_accuracy_before"},
      ],
      "curves": [{"name": "test_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "test_accuracy",
                  "title": "Held-out synthetic accuracy vs RL step"}],
  }
  return c
