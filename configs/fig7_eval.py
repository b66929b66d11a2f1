"""Figure 7's evaluation job: temperature-0.7 sampling, 64 samples per held-out synthetic test problem, Pass@K and
Maj@K for K = 1..64, of a policy run written by the RL stage (configs/grpo_toy.py's task).

  python -m experiments.run --config configs/fig7_eval.py --config.checkpoint=<rl run dir> --workdir <dir>
The model config and the tokenizer are the run's (its run.json). configs/sweep_fig7.py runs it on the SFT and GRPO
policies of each Figure 5 seed.
"""
from configs import grpo_toy
from dsmath.eval.checkpoint_eval import default_config

K_VALUES = (1, 2, 4, 8, 16, 32, 64)


def get_config():
  g = grpo_toy.get_config()
  c = default_config()
  c.checkpoint = ""
  c.sampling.strategy = {"name": "temperature", "temperature": 0.7}  # the paper's Figure 7 setting
  c.sampling.max_new_tokens = g.rollout.max_new_tokens
  c.sampling.seed = 0
  c.sampling.batch_rows = 128
  c.eval.benchmarks = ("synthetic",)
  c.eval.num_examples = 50
  c.eval.prompt_style = "plain"
  c.eval.k_values = K_VALUES
  c.eval.num_samples = max(K_VALUES)
  c.eval.bootstrap_resamples = 500
  # the RL task's held-out split: make_split("test", ..., seed) with the RL job's seed, difficulty and test_fraction
  syn = g.task.synthetic
  c.eval.benchmark_options = {"synthetic": {"num_examples": 50, "seed": 0, "test_fraction": syn.test_fraction,
                                            **syn.difficulty.to_dict()}}
  return c
