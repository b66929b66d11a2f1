"""Evaluate the toy pre-training run on GSM8K and MATH subsets (zero-shot, greedy) through the JAX sampler.

  python -m experiments.eval --config configs/eval_toy.py --checkpoint runs/pretrain_toy
The model config and the tokenizer are the run's (its run.json).
"""
from dsmath.eval.checkpoint_eval import default_config


def get_config():
  c = default_config()
  c.workdir = "runs/eval_toy"
  c.checkpoint = "runs/pretrain_toy"
  c.sampling.max_new_tokens = 128
  c.eval.benchmarks = ("gsm8k", "math")
  c.eval.num_examples = 16
  c.eval.prompt_style = "zero_shot"
  c.eval.k_values = (1,)
  c.eval.bootstrap_resamples = 200
  return c
