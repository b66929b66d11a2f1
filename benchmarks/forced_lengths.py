"""Rollout R's length table (../shared/BENCHMARK-SHAPES.md, ../shared/tools/rollout_lengths.py) and the means of ending
every row at its target on each side: HF peers get a LogitsProcessor that forces EOS exactly at the row's target (and
forbids it before); dsmath ends each row by its per-row budget (`budgets=`), and an RL step's sampler is given the
budgets by `dsmath_forced_lengths`.
"""
import contextlib
import functools
import importlib.util

import numpy as np

from dsmath.paths import shared_data_dir
from dsmath.sample import continuous, engine

# name -> (dataset, questions, G, budget, model preset), as BENCHMARK-SHAPES.md defines them
SHAPES = {"gsm8k": ("gsm8k", 16, 8, 512, "S"), "math_g64": ("math", 4, 64, 1024, "S"),
          "gsm8k_m": ("gsm8k", 8, 8, 512, "M")}


def target_lengths(dataset: str, questions: int, group: int, budget: int) -> np.ndarray:
  """[questions * group] int32 targets (question-major rows) from the shared tool."""
  path = shared_data_dir().parent / "tools" / "rollout_lengths.py"
  spec = importlib.util.spec_from_file_location("rollout_lengths", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.target_lengths(dataset, questions, group, budget, data_dir=str(shared_data_dir()))


def eos_at_targets(targets, prompt_width: int, eos_id: int):
  """An HF LogitsProcessor for a batch whose row i must end with EOS as its targets[i]-th new token: EOS is masked
  before it and is the only choice at it. prompt_width: the (padded) input width generate started from."""
  import torch
  from transformers import LogitsProcessor

  class EosAtTargets(LogitsProcessor):
    def __init__(self):
      self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)

    def __call__(self, input_ids, scores):
      made = input_ids.shape[1] - prompt_width  # tokens generated so far
      last = (self.targets - 1 == made)[:, None]
      out = scores.clone()
      out[:, eos_id] = -float("inf")
      out = torch.where(last, -float("inf"), out)
      out[last[:, 0], eos_id] = 0.0
      return out

  return EosAtTargets()


@contextlib.contextmanager
def dsmath_forced_lengths(targets):
  """While open, both dsmath samplers (`engine.sample_arrays`, `continuous.sample_arrays`) end row r of a call at
  targets[row_offset + r] tokens (budgets), whichever one an RL step calls: the dsmath side of TRL's forcing
  LogitsProcessor. Rows past the table (padding) keep the call's budget."""
  targets = np.asarray(targets, np.int32)

  def forced(fn):
    @functools.wraps(fn)
    def call(cfg, params, tokens, lengths, *, max_new_tokens, num_samples, row_offset=0, **kw):
      rows = tokens.shape[0] * num_samples
      idx = row_offset + np.arange(rows)
      budgets = np.where(idx < len(targets), targets[np.minimum(idx, len(targets) - 1)], max_new_tokens)
      return fn(cfg, params, tokens, lengths, max_new_tokens=max_new_tokens, num_samples=num_samples,
                row_offset=row_offset, budgets=np.minimum(budgets, max_new_tokens), **kw)
    return call

  saved = engine.sample_arrays, continuous.sample_arrays
  engine.sample_arrays, continuous.sample_arrays = forced(saved[0]), forced(saved[1])
  try:
    yield
  finally:
    engine.sample_arrays, continuous.sample_arrays = saved
