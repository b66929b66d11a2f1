"""Figure 6 at toy scale, and the learned reward models' outcome: GRPO driven by a learned process (PRM) or outcome
(ORM) reward model, one iteration of 200 steps against two iterations of 100 (the paper's Algorithm 1: pi_ref reset
and the reward model retrained on the current policy's samples with 10% replay of its earlier data), and the
paper-faithful arms that collapse, 5 seeds.

  python -m experiments.sweep --config configs/sweep_fig6.py      # after configs/sweep_fig5.py (its setup)
  python -m experiments.sweep --config configs/sweep_fig6.py:recipe   # after configs/sweep_recipe.py
Every cell of seed s starts from the Figure 5 sweep's SFT model of that seed (runs/sweep_fig5/_setup/base_s<s>/sft),
the recipe's SFT model for that seed, so the arms of a seed share one SFT policy. With "recipe" the cells start from
the recipe sweep's SFT models instead (runs/sweep_recipe_slip<s>/seed=<seed>/recipe/sft, the slip of configs/toy.py;
results/fig6_recipe_slip<s>): the recipe as it stands, without re-running its first stages. The learned reward is the
only training reward; the rule grader measures the rollouts (rule accuracy beside the proxy) and the held-out test
split.
  prm_paper / orm_paper   configs/grpo_{prm,orm}_paper_toy.py: the paper's estimators, reward models of 64 samples
  prm_one / orm_one       configs/grpo_{prm,orm}_toy.py: the settings chosen on the validation split, 1 x 200 steps
                          (orm_one with the earlier reward model: lr 1e-3, 400 steps, the last state)
  prm_two / orm_two       the same, 2 iterations x 100 steps (orm_two: configs/grpo_iterative_toy.py)
  orm_one_rm800 / orm_two_rm800   orm_one / orm_two with grpo_orm_toy's reward model as it stands (lr 3e-4, 800
                          steps, the state that orders held-out pairs best; configs/sweep_rm_selection.py)
  step_check              GRPO+PS with the synthetic task's rule step checker (Figure 5's row), beside prm_one
  orm_product, orm_product_two, prm_product   reward models as a noisy-AND over tokens (reward_model.pool="product")
  prm_corrupt, prm_product_corrupt, prm_two_corrupt   prm_one / prm_product / prm_two with corrupted copies of half
                                                       the samples
Reported beside accuracy: the reward model's label and within-question pair accuracy on samples of questions it did
not train on, after its first and last round, and the rollouts' rule accuracy and learned reward over the last 20
steps.
"""
import os

from configs.sweep_fig5 import CURVES, SEEDS, accuracy_metrics
from configs.sweep_rm_diagnosis import window_metrics
from configs.toy import TEACHER_SLIP
from dsmath.config import config_dict
from dsmath.paths import REPO_ROOT
from dsmath.sweep import SweepConfig

TOTAL_STEPS = 200
FIG5_SETUP = os.path.join(str(REPO_ROOT), "runs", "sweep_fig5", "_setup")


def _arm(kind: str, variant: str) -> dict:
  config = f"configs/toy.py:rl:grpo_{kind}_{'paper_' if variant == 'paper' else ''}toy"
  if (kind, variant) == ("orm", "two"):
    config = "configs/toy.py:rl:grpo_iterative_toy"  # the same settings as orm_one, as its own config
  iterations = 2 if variant == "two" else 1
  return {"rl:config": config, "rl/rl.iterations": iterations, "rl/rl.steps": TOTAL_STEPS // iterations}


ARMS = {f"{kind}_{variant}": _arm(kind, variant) for kind in ("prm", "orm") for variant in ("paper", "one", "two")}
# orm_one / orm_two as first run: the reward model of the earlier grpo_orm_toy (lr 1e-3, 400 steps, the last state)
EARLIER_ORM = {"rl/reward_model.lr": 1e-3, "rl/reward_model.steps": 400, "rl/reward_model.select_every": 0}
for _name in ("orm_one", "orm_two"):
  ARMS[_name] = {**ARMS[_name], **EARLIER_ORM}
# The configs as they stand (grpo_orm_toy's reward model chosen by within-question pair accuracy on held-out training
# questions, configs/sweep_rm_selection.py: lr 3e-4 for 800 steps, the state that orders pairs best kept)
RM800 = {"rl/reward_model.lr": 3e-4, "rl/reward_model.steps": 800, "rl/reward_model.select_every": 50}
ARMS["orm_one_rm800"] = {**ARMS["orm_one"], **RM800}
ARMS["orm_two_rm800"] = {**ARMS["orm_two"], **RM800}
# Reward models as a noisy-AND over tokens (reward_model.pool = "product", dsmath.rl.rewards.pooled_logits): trained
# on the answer's rule label, the loss reaches the token of the wrong step. The ORM reads P(right) at the last token;
# the PRM reads P(the prefix is right) at each step end, trained on the ORM's data without Math-Shepherd labels.
PRODUCT = {"rl/reward_model.pool": "product"}
ARMS["orm_product"] = {**ARMS["orm_one_rm800"], **PRODUCT}
ARMS["orm_product_two"] = {**ARMS["orm_two_rm800"], **PRODUCT}
ARMS["prm_product"] = {**ARMS["prm_one"], **PRODUCT, **RM800, "rl/reward_model.label": "outcome",
                       "rl/reward_model.questions": 1000, "rl/reward_model.heldout_questions": 256}
# PRMs trained with corrupted copies of half the policy's samples beside them (dsmath.rl.corruptions: a step dropped,
# the start cut off, stopped early; graded by the rule grader): the outputs RL drove the PRM arms to (a bare "7}")
CORRUPT = {"rl/reward_model.corrupted_fraction": 0.5}
ARMS["prm_corrupt"] = {**ARMS["prm_one"], **CORRUPT}
ARMS["prm_product_corrupt"] = {**ARMS["prm_product"], **CORRUPT}
ARMS["prm_two_corrupt"] = {**ARMS["prm_two"], **CORRUPT}  # both fixes: iterated and corrupted copies
# Figure 5's GRPO+PS with the rule step checker, beside the learned PRM (prm_one) on the same SFT models
ARMS["step_check"] = {"rl:config": "configs/toy.py:rl:grpo_ps_toy", "rl/rl.iterations": 1, "rl/rl.steps": TOTAL_STEPS}


def _sft_model(source: str, seed: int) -> str:
  if source == "recipe":
    return os.path.join(str(REPO_ROOT), "runs", f"sweep_recipe_slip{TEACHER_SLIP:g}", f"seed={seed}", "recipe", "sft")
  return os.path.join(FIG5_SETUP, f"base_s{seed}", "sft")


def get_config(arg: str = ""):
  """arg: '' (SFT models of configs/sweep_fig5.py's setup) or 'recipe' (those of configs/sweep_recipe.py)."""
  if arg not in ("", "recipe"):
    raise ValueError(f"configs/sweep_fig6.py takes '' or 'recipe'; got {arg!r}")
  c = config_dict(SweepConfig)
  c.name = "Figure 6 (toy): GRPO with learned reward models, 2 iterations vs 1, and the paper-faithful arms"
  suffix = f"_recipe_slip{TEACHER_SLIP:g}" if arg else ""
  c.sweep_dir = f"runs/sweep_fig6{suffix}"
  c.results_dir = f"results/fig6{suffix}"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "rl", "config": "configs/toy.py:rl:grpo_prm_toy",
               "overrides": {"reward_model.replay_fraction": 0.1, "eval.every": 50}}]
  c.axes = [
      {"name": "arm", "levels": [{"name": n, "set": s} for n, s in ARMS.items()]},
      {"name": "seed", "levels": [{"name": str(s), "set": {"rl/seed": s,
                                                            "rl/init_from": _sft_model(arg, s)}} for s in SEEDS]},
  ]
  c.aggregate = {
      "group_by": ["arm"],
      "metrics": accuracy_metrics() + [
          {"name": "reward-model label accuracy (held-out), first round", "stage": "rl",
           "path": "reward_model.first_heldout_label_accuracy", "paired": False, "optional": True},
          {"name": "reward-model label accuracy (held-out), last round", "stage": "rl",
           "path": "reward_model.last_heldout_label_accuracy", "optional": True},
          {"name": "reward-model pair accuracy (held-out), first round", "stage": "rl",
           "path": "reward_model.first_heldout_pair_accuracy", "paired": False, "optional": True},
          {"name": "reward-model pair accuracy (held-out), last round", "stage": "rl",
           "path": "reward_model.last_heldout_pair_accuracy", "optional": True}] + window_metrics(),
      "curves": CURVES + [{"name": "proxy_reward_mean", "stage": "rl", "file": "metrics.jsonl",
                           "key": "proxy_reward_mean", "title": "Learned reward of the rollouts vs RL step"}],
      "comparisons": [f"arm={k}_two vs arm={k}_one" for k in ("prm", "orm")] +
                     [f"arm={k}_one vs arm={k}_paper" for k in ("prm", "orm")] +
                     ["arm=prm_one vs arm=orm_one", "arm=prm_one vs arm=step_check",
                      "arm=orm_one_rm800 vs arm=orm_one", "arm=orm_two_rm800 vs arm=orm_one_rm800",
                      "arm=orm_two_rm800 vs arm=orm_two", "arm=prm_product_corrupt vs arm=prm_one",
                      "arm=prm_corrupt vs arm=prm_one", "arm=prm_product_corrupt vs arm=prm_product"]}
  return c
