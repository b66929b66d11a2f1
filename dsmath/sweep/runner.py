"""Runs a sweep: setup stages once, then every cell's stages as subprocesses, `parallel` cells at a time; resumable.

Resumption: a stage whose run directory holds summary.json is done and skipped (re-running a sweep after a crash or
Ctrl-C redoes only what is missing; each stage also resumes from its own checkpoints). A failed stage keeps its log
(<stage dir>/log.txt; on a retry the old one is renamed log.failed-<n>.txt), stops the rest of its cell, is listed
in the status file and the report, and makes the sweep return non-zero; the other cells still run and aggregate.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from dsmath.config import to_dict
from dsmath.files import write_json_atomic, write_text_atomic
from dsmath.paths import REPO_ROOT
from dsmath.sweep import tables as agg
from dsmath.sweep import plots
from dsmath.sweep.grid import Cell, Stage, SweepConfig, expand, resolve_sweep_config, setup_stages

LOG = "log.txt"
SUMMARY = "summary.json"
STATUS = "sweep_status.json"


@dataclasses.dataclass
class StageResult:
  stage: str
  status: str  # "done" (ran now), "cached" (summary.json existed), "failed", "skipped" (disabled or after a failure)
  seconds: float = 0.0
  returncode: int | None = None
  log: str = ""
  error_tail: str = ""


def auto_parallel() -> int:
  return max(1, min(2, os.cpu_count() or 1))


def _tail(path: Path, lines: int = 15) -> str:
  try:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
  except FileNotFoundError:
    return ""


def run_stage(stage: Stage, *, python: str = sys.executable, timeout_s: float = 0.0, env: dict | None = None,
              cwd: str | Path = REPO_ROOT) -> StageResult:
  """Runs one stage as a subprocess (stdout+stderr to <workdir>/log.txt) unless its summary.json exists."""
  workdir = Path(stage.workdir)
  if not stage.enabled:
    return StageResult(stage.name, "skipped")
  if (workdir / SUMMARY).exists():
    return StageResult(stage.name, "cached", log=str(workdir / LOG))
  workdir.mkdir(parents=True, exist_ok=True)
  log = workdir / LOG
  if log.exists():  # a previous attempt failed or was interrupted: keep its log
    n = 1
    while (workdir / f"log.failed-{n}.txt").exists():
      n += 1
    log.rename(workdir / f"log.failed-{n}.txt")
  cmd = stage.command(python)
  t0 = time.perf_counter()
  with log.open("w") as f:
    f.write("$ " + " ".join(cmd) + "\n")
    f.flush()
    try:
      proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=str(cwd),
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            timeout=timeout_s or None)
      rc = proc.returncode
    except subprocess.TimeoutExpired:
      f.write(f"\n[sweep] killed after stage_timeout_s={timeout_s}\n")
      rc = -9
  seconds = time.perf_counter() - t0
  if rc == 0 and not (workdir / SUMMARY).exists():
    with log.open("a") as f:
      f.write(f"\n[sweep] exit code 0 but no {SUMMARY} in {workdir}: the module did not write a summary\n")
    rc = -1
  status = "done" if rc == 0 else "failed"
  return StageResult(stage.name, status, seconds, rc, str(log), "" if rc == 0 else _tail(log))


def run_cell(cell: Cell, **kwargs) -> list[StageResult]:
  """The cell's stages in order; after a failure the remaining stages are 'skipped'."""
  results = []
  for stage in cell.stages:
    if any(r.status == "failed" for r in results):
      results.append(StageResult(stage.name, "skipped"))
      continue
    results.append(run_stage(stage, **kwargs))
  return results


def run_sweep(config, sweep_dir: str | Path | None = None, *, parallel: int | None = None, python: str = sys.executable,
              only: Sequence[str] = (), command: str = "", echo: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) the sweep and aggregates it; returns the status dict written to <sweep_dir>/sweep_status.json.

  only: run just the cells whose names contain one of these substrings (aggregation still covers every cell that is
  complete on disk).
  """
  cfg = resolve_sweep_config(config)
  if not (sweep_dir or cfg.sweep_dir):
    raise ValueError("no sweep directory: set config.sweep_dir or pass --sweep_dir")
  sweep_dir = Path(sweep_dir or cfg.sweep_dir).absolute()  # orbax needs absolute checkpoint paths
  sweep_dir.mkdir(parents=True, exist_ok=True)
  parallel = parallel or cfg.parallel or auto_parallel()
  kwargs = {"python": python, "timeout_s": cfg.stage_timeout_s, "env": dict(cfg.env)}
  write_json_atomic(sweep_dir / "sweep_config.json", to_dict(cfg))
  t0 = time.perf_counter()
  status = {"name": cfg.name, "sweep_dir": str(sweep_dir), "command": command, "parallel": parallel,
            "setup": [], "cells": {}, "failed": []}

  for stage in setup_stages(cfg, sweep_dir):
    r = run_stage(stage, **kwargs)
    status["setup"].append(dataclasses.asdict(r))
    echo(f"[setup] {stage.name}: {r.status}" + (f" in {r.seconds:.0f}s" if r.status == "done" else ""))
    if r.status == "failed":
      status["failed"].append(f"_setup/{stage.name}")
      echo(f"[setup] {stage.name} FAILED (exit {r.returncode}); log: {r.log}\n{r.error_tail}")
      write_json_atomic(sweep_dir / STATUS, status)
      return status

  cells = expand(cfg, sweep_dir)
  todo = [c for c in cells if not only or any(o in c.name for o in only)]
  lock = threading.Lock()
  done_count = [0]

  def work(cell: Cell):
    results = run_cell(cell, **kwargs)
    with lock:
      done_count[0] += 1
      parts = ", ".join(f"{r.stage} {r.status}" + (f" {r.seconds:.0f}s" if r.status == "done" else "")
                        for r in results)
      echo(f"[{done_count[0]}/{len(todo)}] {cell.name}: {parts}")
      for r in results:
        if r.status == "failed":
          echo(f"  FAILED {cell.name}/{r.stage} (exit {r.returncode}); log kept: {r.log}\n"
               + "\n".join("    " + line for line in r.error_tail.splitlines()))
    return cell, results

  echo(f"[sweep] {len(todo)} cell(s) of {len(cells)}, {parallel} at a time, in {sweep_dir}")
  with cf.ThreadPoolExecutor(max_workers=parallel) as pool:
    for cell, results in pool.map(work, todo):
      status["cells"][cell.name] = [dataclasses.asdict(r) for r in results]
      status["failed"] += [f"{cell.name}/{r.stage}" for r in results if r.status == "failed"]

  complete = {c.name for c in cells if all(
      (Path(s.workdir) / SUMMARY).exists() for s in c.stages if s.enabled)}
  status["complete_cells"] = sorted(complete)
  status["seconds"] = time.perf_counter() - t0
  if cfg.aggregate.metrics or cfg.aggregate.curves:
    status["outputs"] = write_outputs(cfg, cells, complete, sweep_dir, command=command)
    echo("\n" + Path(status["outputs"]["table_md"]).read_text())
  write_json_atomic(sweep_dir / STATUS, status)
  if status["failed"]:
    echo(f"[sweep] {len(status['failed'])} stage(s) failed: {status['failed']} (logs kept; re-run to retry)")
  return status


def write_outputs(cfg: SweepConfig, cells: Sequence[Cell], complete: set[str], sweep_dir: Path, *,
                  command: str = "") -> dict:
  """results.json, results.md and one PNG per curve in sweep_dir, copied to config.results_dir if set; the results
  carry their provenance (tables.provenance_lines)."""
  from dsmath.runs import provenance  # imports JAX: only once there are results to write
  result = agg.aggregate(cells, cfg.aggregate, complete)
  result["name"] = cfg.name
  result["command"] = command
  result["provenance"] = provenance()
  md = f"# {cfg.name or 'sweep'}\n\n"
  if command:
    md += f"Command: `{command}`\n\n"
  md += agg.markdown_table(result)
  outputs = {"table_md": str(sweep_dir / "results.md"), "table_json": str(sweep_dir / "results.json"), "plots": []}
  for name, curve in result["curves"].items():
    if curve["groups"]:
      png = sweep_dir / f"{name}.png"
      plots.plot_curve(curve, png, confidence=result["confidence"])
      outputs["plots"].append(str(png))
      md += f"\n![{name}]({png.name})\n"
  md += "\n".join(agg.provenance_lines(result)) + "\n"
  write_text_atomic(outputs["table_md"], md)
  write_json_atomic(outputs["table_json"], result)
  if cfg.results_dir and complete:  # a sweep with nothing complete (a setup-only run) leaves results_dir alone
    dest = Path(cfg.results_dir)
    if not dest.is_absolute():
      dest = REPO_ROOT / dest
    dest.mkdir(parents=True, exist_ok=True)
    for src in [outputs["table_md"], outputs["table_json"], *outputs["plots"], str(sweep_dir / "sweep_config.json")]:
      shutil.copyfile(src, dest / Path(src).name)
    if command:
      write_text_atomic(dest / "command.txt", command + "\n")
    outputs["results_dir"] = str(dest)
  return outputs


def aggregate_sweep(config, sweep_dir: str | Path | None = None, *, command: str = "") -> dict:
  """Tables and plots from the cells complete on disk, without running anything."""
  cfg = resolve_sweep_config(config)
  sweep_dir = Path(sweep_dir or cfg.sweep_dir).absolute()
  cells = expand(cfg, sweep_dir)
  complete = {c.name for c in cells if all((Path(s.workdir) / SUMMARY).exists() for s in c.stages if s.enabled)}
  return write_outputs(cfg, cells, complete, sweep_dir, command=command)
