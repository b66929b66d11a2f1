"""Figure 5 at toy scale: RFT, Online RFT, GRPO+OS and GRPO+PS on the synthetic task from the same SFT model, 3 seeds.

  python -m experiments.sweep --config configs/sweep_fig5.py
Setup (once per seed, before any cell): one SFT job (`rl.method = "sft"`, 400 steps on gold solutions, the toy
recipe's SFT) -> runs/sweep_fig5/_setup/sft_s<seed>. Every cell of that seed starts its method from that checkpoint
(`init_from`) with that run's tokenizer, so all four methods of a seed share one SFT policy (check: equal
`test accuracy of the SFT policy` within a seed). Table: held-out synthetic test accuracy (64 test problems,
EVAL_SAMPLES samples each at the RL temperature) before and after RL. Curve: that held-out accuracy every EVAL_EVERY
RL steps (`test_accuracy` in rl_metrics.jsonl; the trainer samples it with keys of its own, so evaluating does not
change what is trained).
"""
import ml_collections

SEEDS = (0, 1, 2)
SFT_STEPS = 400
EVAL_EVERY, EVAL_SAMPLES = 4, 4


def _sft(seed: int) -> dict:
  return {"name": f"sft_s{seed}", "config": "configs/grpo_toy.py",
          "overrides": {"seed": seed, "rl.method": "sft", "rl.steps": SFT_STEPS, "rl.sft_warmup_steps": 0,
                        "optimizer.peak_lr": 3e-3}}


def get_config():
  c = ml_collections.ConfigDict()
  c.name = "Figure 5 (toy): RFT vs Online RFT vs GRPO+OS vs GRPO+PS"
  c.sweep_dir = "runs/sweep_fig5"
  c.results_dir = "results/fig5"
  c.parallel = 2
  c.stage_timeout_s = 3600
  c.setup = [_sft(s) for s in SEEDS]
  c.stages = [{"name": "rl", "config": "configs/grpo_toy.py",
               "overrides": {"rl.sft_warmup_steps": 0, "rl.eval_every": EVAL_EVERY, "rl.eval_samples": EVAL_SAMPLES}}]
  c.axes = [
      {"name": "method", "levels": [
          {"name": "rft", "set": {"rl:config": "configs/rft_toy.py"}},
          {"name": "online_rft", "set": {"rl:config": "configs/online_rft_toy.py"}},
          {"name": "grpo_os", "set": {"rl:config": "configs/grpo_toy.py"}},
          {"name": "grpo_ps", "set": {"rl:config": "configs/grpo_ps_toy.py"}},
      ]},
      {"name": "seed", "levels": [
          {"name": str(s), "set": {"rl/seed": s, "rl/init_from": "{sft_s%d}" % s,
                                   "rl/tokenizer": "{sft_s%d}/tokenizer/spm.model" % s}} for s in SEEDS]},
  ]
  c.aggregate = {
      "group_by": ["method"],
      "metrics": [
          {"name": "test accuracy after RL", "stage": "rl", "path": "test_accuracy_after"},
          {"name": "gain over the SFT policy", "stage": "rl", "path": "test_accuracy_gain"},
          {"name": "test accuracy of the SFT policy", "stage": "rl", "path": "test_accuracy_before"},
      ],
      "curves": [{"name": "test_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "test_accuracy",
                  "title": "Held-out test accuracy vs RL step"},
                 {"name": "train_rollout_accuracy", "stage": "rl", "file": "rl_metrics.jsonl", "key": "accuracy",
                  "title": "Training-rollout accuracy vs RL step"}],
  }
  return c
