"""Runs a grid of jobs (methods x seeds x settings) and aggregates it: mean and 95% t-interval tables, plots.

  python -m experiments.sweep --config configs/sweep_table6.py [--sweep_dir runs/sweep_table6] [--parallel 2]
      [--only arm=code_first] [--aggregate_only]

Resumable: re-running skips every stage that already wrote summary.json (see dsmath.sweep.runner). Exit code 1 if a
stage failed (its log is kept and printed); the table then covers the complete cells and lists the missing ones.
"""
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from dsmath import sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/sweep_*.py file.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Sweep directory (default: config.sweep_dir).")
_PARALLEL = flags.DEFINE_integer("parallel", None, "Cells at once (default: config.parallel; 0 = auto).")
_ONLY = flags.DEFINE_multi_string("only", [], "Run only cells whose name contains this (repeatable).")
_AGG_ONLY = flags.DEFINE_bool("aggregate_only", False, "Run nothing; aggregate the cells complete on disk.")


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError("--config configs/sweep_<name>.py is required")
  command = "python -m experiments.sweep " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  if _AGG_ONLY.value:
    outputs = sweep.aggregate_sweep(_CONFIG.value, _SWEEP_DIR.value, command=command)
    print(open(outputs["table_md"]).read())
    return 0
  status = sweep.run_sweep(_CONFIG.value, _SWEEP_DIR.value, parallel=_PARALLEL.value, only=_ONLY.value,
                           command=command)
  return 1 if status["failed"] else 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
