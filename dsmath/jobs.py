"""Registry of runnable stages: config.job -> the stage's `run(config, workdir) -> dict`, and `run_job`, the one
place a stage's summary.json is written.

Entries are import paths so that running one stage imports only what it needs (Beam, torch-free, ...). Each stage
resolves its config against its own schema (dsmath.config) inside its `run`.
"""
import importlib
import time
from pathlib import Path
from typing import Callable

from dsmath.files import write_json_atomic

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
    "hf_import": "dsmath.hf_stage:run_import",
    "hf_export": "dsmath.hf_stage:run_export",
}

SUMMARY = "summary.json"


def resolve(job: str) -> Callable:
  if job not in JOBS:
    raise KeyError(f"config.job={job!r} is not a known job; known jobs: {sorted(JOBS)}")
  module, fn = JOBS[job].split(":")
  return getattr(importlib.import_module(module), fn)


def run_job(config, workdir: str) -> dict:
  """Runs config.job in workdir and writes its summary, with the run's wall time (`job_seconds`) and provenance
  (commit, dirty tree, package versions, machine), to workdir/summary.json, atomically, once."""
  from dsmath.runs import provenance  # imports JAX: after the stage has configured it (distributed, platforms)
  if "://" not in str(workdir):  # orbax (and the run.json links between runs) need absolute local paths
    workdir = str(Path(workdir).absolute())
  Path(workdir).mkdir(parents=True, exist_ok=True)
  t0 = time.monotonic()
  summary = resolve(config.job)(config, workdir)
  summary = {**summary, "job_seconds": time.monotonic() - t0, "provenance": provenance()}
  write_json_atomic(Path(workdir) / SUMMARY, summary)
  return summary
