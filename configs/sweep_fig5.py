"""Figure 5 at toy scale: RFT, Online RFT, GRPO+OS, GRPO+PS, and beyond the paper Dr. GRPO, DAPO, GSPO, RLOO, each from
the same SFT model of a seed, 5 seeds.

  python -m experiments.sweep --config configs/sweep_fig5.py
Setup (once per seed): the toy recipe's first stages (configs/toy.py:base: corpus, sources, pre-training, the
train-job SFT on the careless teacher's SFT set, stage seeds = the sweep seed) -> runs/sweep_fig5/_setup/base_s<s>.
Every cell of seed s starts its method from that SFT model (`init_from`), with the recipe's RL settings
(configs/toy.py:rl:<method config>: 200 steps of 8 questions, lr 3e-4, settings chosen on the validation split for
GRPO and used unchanged for every method). GRPO+PS uses the synthetic task's rule step checker as the process reward.
Table: held-out synthetic test accuracy (200 questions), greedy and sampled (4 samples a question at T = 0.7), before
and after RL, and the paired gain. Curves: held-out accuracy every 50 RL steps, training-rollout accuracy per step.
"""
from dsmath.config import config_dict
from dsmath.sweep import SweepConfig

SEEDS = (0, 1, 2, 3, 4)
METHODS = (("rft", "rft_toy"), ("online_rft", "online_rft_toy"), ("grpo_os", "grpo_toy"), ("grpo_ps", "grpo_ps_toy"),
           ("dr_grpo", "dr_grpo_toy"), ("dapo", "dapo_toy"), ("gspo", "gspo_toy"), ("rloo", "rloo_toy"))
STAGE_SEEDS = ("stages.pretrain.seed", "stages.sft.seed")


def setup(seed: int) -> dict:
  return {"name": f"base_s{seed}", "config": "configs/toy.py:base", "overrides": {k: seed for k in STAGE_SEEDS}}


def accuracy_metrics(stage: str = "rl") -> list:
  out = []
  for kind in ("greedy", "sampled"):
    # Paired with a baseline run from the same SFT model, only "after" differs (a gain's difference is the same).
    out += [{"name": f"{kind} accuracy after RL", "stage": stage, "path": f"test_accuracy_{kind}_after"},
            {"name": f"{kind} gain over the SFT model", "stage": stage, "path": f"test_accuracy_{kind}_gain.gain",
             "paired": False},
            {"name": f"{kind} accuracy of the SFT model", "stage": stage, "path": f"test_accuracy_{kind}_before",
             "paired": False}]
  return out


CURVES = [{"name": "test_accuracy_greedy", "stage": "rl", "file": "metrics.jsonl", "key": "test_accuracy_greedy",
           "title": "Held-out greedy accuracy vs RL step"},
          {"name": "test_accuracy_sampled", "stage": "rl", "file": "metrics.jsonl", "key": "test_accuracy_sampled",
           "title": "Held-out sampled accuracy (T = 0.7) vs RL step"},
          {"name": "train_rollout_accuracy", "stage": "rl", "file": "metrics.jsonl", "key": "accuracy",
           "title": "Training-rollout accuracy vs RL step"}]


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Figure 5 (toy): RFT vs Online RFT vs GRPO+OS vs GRPO+PS, and Dr. GRPO, DAPO, GSPO, RLOO"
  c.sweep_dir = "runs/sweep_fig5"
  c.results_dir = "results/fig5"
  c.parallel = 1  # 2 cores: one cell at a time is as fast and keeps timings honest
  c.stage_timeout_s = 3600
  c.setup = [setup(s) for s in SEEDS]
  c.stages = [{"name": "rl", "config": "configs/toy.py:rl:grpo_toy", "overrides": {"eval.every": 50}}]
  c.axes = [
      {"name": "method", "levels": [{"name": name, "set": {"rl:config": f"configs/toy.py:rl:{cfg}"}}
                                    for name, cfg in METHODS] + [
          # DAPO's overlong shaping (buffer 25% of max_new_tokens) also penalises this task's longest right
          # solutions (up to 26 of 32 tokens): the same method without it separates the two effects.
          {"name": "dapo_no_overlong", "set": {"rl:config": "configs/toy.py:rl:dapo_toy",
                                               "rl/reward.overlong_buffer": 0}}]},
      {"name": "seed", "levels": [{"name": str(s), "set": {"rl/seed": s, "rl/init_from": "{base_s%d}/sft" % s}}
                                  for s in SEEDS]},
  ]
  c.aggregate = {"group_by": ["method"], "metrics": accuracy_metrics(), "curves": CURVES,
                 "compare_to": "method=grpo_os"}  # differences paired on the seed (one SFT model)
  return c
