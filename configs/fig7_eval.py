"""Figure 7's evaluation job: temperature-0.7 sampling, 64 samples per held-out synthetic test problem, Pass@K and
Maj@K for K = 1..64, of a run of the toy recipe's task (configs/toy.py: the SFT model or an RL policy).

  python -m experiments.run --config configs/fig7_eval.py --config.checkpoint=<run dir> --workdir <dir>
The model config and the tokenizer are the run's (its run.json). configs/sweep_fig7.py runs it on the SFT and GRPO
policies of each Figure 5 seed.
"""
from configs import toy

K_VALUES = (1, 2, 4, 8, 16, 32, 64)


def get_config():
  c = toy.eval_config("", num_examples=50, strategy={"name": "temperature", "temperature": 0.7},  # the paper's
                      k_values=list(K_VALUES))                                                     # Figure 7 setting
  c.eval.num_samples = max(K_VALUES)
  c.sampling.batch_rows = 128
  return c
