"""The `eval` stage: evaluate a trained checkpoint through the JAX sampler on the configured benchmarks."""
import json
from pathlib import Path

import jax
import ml_collections

from dsmath import model, sample
from dsmath.config import check_keys
from dsmath.data.tokenizer import load_tokenizer
from dsmath.eval.evaluate import run as run_evaluation

TOKENIZER_REF = "tokenizer_ref.json"  # written by every training stage beside its checkpoints


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "eval"
  c.workdir = ""
  c.checkpoint = ""  # a run directory (holding checkpoints/) or one step directory
  c.model = ml_collections.ConfigDict({"preset": "tiny"})
  c.tokenizer = ""  # "" = the checkpoint run's tokenizer_ref.json
  c.sampling = ml_collections.ConfigDict({
      "strategy": {"name": "greedy"}, "max_new_tokens": 256, "seed": 0, "batch_rows": 64,
      "tool_rounds": 0,  # > 0: tool-integrated generation (python blocks run in the sandbox)
  })
  c.eval = ml_collections.ConfigDict({
      "benchmarks": ["gsm8k"], "num_examples": 32, "prompt_style": "zero_shot", "k_values": [1],
      "num_samples": None, "grading_mode": "math_verify", "num_shots": 4, "seed": 0, "bootstrap_resamples": 1000,
      "grader_workers": 2, "sandbox": {}, "benchmark_options": {},
  })
  return c


def tokenizer_of_run(checkpoint: str, explicit: str = ""):
  """The tokenizer a training run recorded (its tokenizer_ref.json, searched upwards from a step directory)."""
  if explicit:
    return load_tokenizer(explicit)
  path = Path(checkpoint).resolve()
  for run_dir in (path, *path.parents[:3]):
    if (run_dir / TOKENIZER_REF).exists():
      return load_tokenizer(json.loads((run_dir / TOKENIZER_REF).read_text()))
  raise FileNotFoundError(f"no {TOKENIZER_REF} in {checkpoint} or its parents: set config.tokenizer")


def load_policy(config) -> tuple[model.ModelConfig, dict, object]:
  """(model config, params, tokenizer) of config.checkpoint."""
  from dsmath.train import load_params  # the train package owns the checkpoint layout
  if not config.checkpoint:
    raise ValueError("config.checkpoint is empty: pass --checkpoint or set it in the config")
  tokenizer = tokenizer_of_run(config.checkpoint, config.get("tokenizer", ""))
  cfg = model.ModelConfig.from_dict(config.model.to_dict())
  if cfg.vocab_size < tokenizer.vocab_size:
    raise ValueError(f"config.model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}")
  return cfg, load_params(config.checkpoint, model.abstract_params(cfg)), tokenizer


def generator_factory(config) -> sample.GenerateFn:
  cfg, params, tokenizer = load_policy(config)
  s = config.sampling
  tools = sample.ToolConfig(max_rounds=int(s.tool_rounds)) if s.tool_rounds else None
  return sample.text_generator(cfg, params, tokenizer, max_new_tokens=int(s.max_new_tokens),
                               strategy=sample.strategy_from_config(s.strategy.to_dict()),
                               rng=jax.random.key(int(s.seed)), batch_rows=int(s.batch_rows), tools=tools)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  check_keys("eval stage config", config, default_config().keys())
  return run_evaluation(config, workdir, generator_factory)
