"""Registry of runnable stages: config.job -> the stage's `run(config, workdir) -> dict`.

Entries are import paths so that running one stage imports only what it needs (Beam, torch-free, ...).
"""
import importlib
import json
import os
from pathlib import Path
from typing import Callable

JOBS = {
    "corpus": "dsmath.corpus:run",
    "sources": "dsmath.data.materialize:run",
    "pretrain": "dsmath.train:run",
    "sft": "dsmath.train:run",
    "rl": "dsmath.rl:run",
    "eval": "dsmath.eval.checkpoint_eval:run",
    "recipe": "dsmath.recipe:run",
    "heldout_loss": "dsmath.sweep.heldout:run",
    "table6_data": "dsmath.sweep.table6_data:run",
}


def resolve(job: str) -> Callable:
  if job not in JOBS:
    raise KeyError(f"config.job={job!r} is not a known job; known jobs: {sorted(JOBS)}")
  module, fn = JOBS[job].split(":")
  return getattr(importlib.import_module(module), fn)


def run_job(config, workdir: str) -> dict:
  """Runs config.job in workdir and writes its summary to workdir/summary.json (atomically)."""
  Path(workdir).mkdir(parents=True, exist_ok=True)
  summary = resolve(config.job)(config, workdir)
  write_json_atomic(Path(workdir) / "summary.json", summary)
  return summary


def write_json_atomic(path: Path, obj) -> None:
  tmp = Path(str(path) + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, default=str))
  os.replace(tmp, path)
