"""The `recipe` job: runs named stages in order inside one run directory, then writes a report.

Each stage is an ordinary job config (config.stages.<name>) run in <run>/<name>; the string "{run}" inside any of
its values is replaced by the run directory, which is how a stage names another's outputs (a checkpoint, shards).
A stage whose summary.json exists is done and is skipped on a re-run; an interrupted training stage resumes from its
own latest checkpoint. Stage outputs are plain files (JSONL shards, sentencepiece model, orbax checkpoints, eval
JSON), so any stage can also be run alone with its own config.
"""
import json
import logging
import time
from pathlib import Path

import ml_collections

from dsmath.jobs import run_job, write_json_atomic

log = logging.getLogger(__name__)


def fill_run_dir(config: ml_collections.ConfigDict, run_dir: str) -> ml_collections.ConfigDict:
  """A copy of config with "{run}" replaced by run_dir in every string (also inside lists)."""
  def fill(v):
    if isinstance(v, str):
      return v.replace("{run}", run_dir)
    if isinstance(v, (list, tuple)):
      return type(v)(fill(x) for x in v)
    if isinstance(v, dict):
      return {k: fill(x) for k, x in v.items()}
    return v
  return ml_collections.ConfigDict(fill(config.to_dict()))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  missing = [name for name in config.stage_order if name not in config.stages]
  if missing:
    raise KeyError(f"config.stage_order names stage(s) {missing} missing from config.stages "
                   f"(defined: {sorted(config.stages.keys())})")
  run_dir = str(Path(workdir).resolve())
  summaries, timings = {}, {}
  for i, name in enumerate(config.stage_order, 1):
    stage_dir = Path(run_dir) / name
    done = stage_dir / "summary.json"
    if done.exists():
      summaries[name] = json.loads(done.read_text())
      timings[name] = summaries[name].get("_seconds", 0.0) if isinstance(summaries[name], dict) else 0.0
      print(f"[recipe {i}/{len(config.stage_order)}] {name}: done already ({done})", flush=True)
      continue
    stage = fill_run_dir(config.stages[name], run_dir)
    print(f"[recipe {i}/{len(config.stage_order)}] {name} ({stage.job}) -> {stage_dir}", flush=True)
    t0 = time.monotonic()
    summary = run_job(stage, str(stage_dir))
    timings[name] = time.monotonic() - t0
    if isinstance(summary, dict):
      summary["_seconds"] = timings[name]
      write_json_atomic(stage_dir / "summary.json", summary)
    summaries[name] = summary
    print(f"[recipe {i}/{len(config.stage_order)}] {name}: {timings[name]:.0f} s", flush=True)
  from dsmath import report  # matplotlib only once there is something to plot
  path = report.write_recipe_report(config, run_dir, summaries, timings)
  print(f"report: {path}", flush=True)
  return {"stages": list(config.stage_order), "seconds": timings, "report": str(path)}
