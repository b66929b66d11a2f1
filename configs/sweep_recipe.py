"""The default toy recipe (configs/toy.py, README's first command) over seeds: the numbers README quotes.

  python -m experiments.sweep --config configs/sweep_recipe.py                            # seeds 0-7, this machine
  taskset -c 0 python -m experiments.sweep --config configs/sweep_recipe.py:one_core       # seeds 0-2, one core
  python -m experiments.sweep --config configs/sweep_recipe.py:avx2                       # seeds 0-2, AVX2 only
  python -m experiments.sweep --config configs/sweep_recipe.py:,slip=0.9                  # the recipe before slip 0.8
The float rounding of XLA's CPU kernels depends on the instruction set and the number of cores, and the recipe's SFT
amplifies rounding differences into a different model: each machine configuration is its own set of trajectories.
Directories are named by the machine and the SFT teacher's slip rate (configs/toy.py TEACHER_SLIP unless ",slip=<s>"
says otherwise): results/recipe_slip0.8, results/recipe_one_core_slip0.8, ...
"one_core" only names its own directories: the affinity comes from taskset, which every stage process inherits;
"avx2" sets XLA_FLAGS=--xla_cpu_max_isa=AVX2 for every stage (an emulation of a CPU without AVX-512).
Each cell runs the whole recipe with its pre-training, SFT and GRPO stages seeded by the cell's seed (the task, the
teacher's SFT set and the corpus are the recipe's own, the same for every seed). Table: the GRPO stage's held-out
accuracy (200 synthetic test questions, greedy and 4 samples at T = 0.7) before and after RL with the paired gain,
and the recipe's wall time. Curves over RL steps: the reward, the fraction of groups without learning signal (zero
reward variance), the policy's entropy, the KL to the reference, held-out accuracy.
"""
from configs.sweep_fig5 import accuracy_metrics
from configs.toy import TEACHER_SLIP
from dsmath.config import config_dict
from dsmath.sweep import SweepConfig

SEEDS = tuple(range(8))
MACHINES = {"": ("", {}), "one_core": ("_one_core", {}),
            "avx2": ("_avx2", {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"})}
GRPO = "grpo/metrics.jsonl"


def _curve(key: str, title: str) -> dict:
  return {"name": key, "stage": "recipe", "file": GRPO, "key": key, "title": title}


def get_config(arg: str = ""):
  """arg: the machine ('', 'one_core' or 'avx2'), optionally followed by ",slip=<s>": the recipe with the SFT teacher's
  slip rate s instead of configs/toy.py's (EXPERIMENTS.md; its own directories)."""
  machine, *options = arg.split(",")
  if machine not in MACHINES or any(not o.startswith("slip=") for o in options):
    raise ValueError(f"configs/sweep_recipe.py takes '', 'one_core' or 'avx2', then optionally ',slip=<s>'; got {arg!r}")
  suffix, env = MACHINES[machine]
  overrides, slip = {}, TEACHER_SLIP
  for o in options:
    slip = float(o[len("slip="):])
    overrides["stages.sources.synthetic.teacher.slip"] = slip
  suffix += f"_slip{slip:g}"
  c = config_dict(SweepConfig)
  c.name = "The toy recipe over seeds (README's numbers)" + (f", {arg}" if arg else "")
  c.sweep_dir = f"runs/sweep_recipe{suffix}"
  c.results_dir = f"results/recipe{suffix}"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.env = env
  c.stages = [{"name": "recipe", "config": "configs/toy.py", "overrides": overrides}]
  c.axes = [{"name": "seed", "values": list(SEEDS if not machine else SEEDS[:3]),
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
