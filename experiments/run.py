"""Runs one job (a stage or a whole recipe) from a config file.

  python -m experiments.run --config configs/toy.py [--config.some.key=value ...] [--workdir runs/toy]
"""
import json
import sys

from absl import app, flags
from ml_collections import config_flags

from dsmath.jobs import run_job
from dsmath.paths import DataNotFound

_CONFIG = config_flags.DEFINE_config_file("config", "configs/toy.py", "A configs/*.py file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.get("workdir")
  if not workdir:
    raise app.UsageError("no run directory: pass --workdir or set config.workdir")
  try:
    summary = run_job(config, workdir)
  except DataNotFound as e:  # no benchmark folder: the message says which command fetches it
    sys.exit(f"error: {e}")
  print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
