"""Evaluates a checkpoint on benchmarks through the JAX sampler.

  python -m experiments.eval --config configs/eval_toy.py --checkpoint runs/pretrain_toy [--workdir runs/eval]
"""
import json
import sys

from absl import app, flags
from ml_collections import config_flags

from dsmath.jobs import run_job
from dsmath.paths import DataNotFound

_CONFIG = config_flags.DEFINE_config_file("config", "configs/eval_toy.py", "A configs/*.py file with job='eval'.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run or step directory to evaluate (default: config.checkpoint).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results go (default: config.workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  if config.job != "eval":
    raise app.UsageError(f"experiments.eval needs a config with job='eval', got {config.job!r}")
  if _CHECKPOINT.value:
    config.checkpoint = _CHECKPOINT.value
  workdir = _WORKDIR.value or config.workdir
  if not workdir:
    raise app.UsageError("no output directory: pass --workdir or set config.workdir")
  try:
    summary = run_job(config, workdir)
  except DataNotFound as e:  # no benchmark folder: the message says which command fetches it
    sys.exit(f"error: {e}")
  print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
