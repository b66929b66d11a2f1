"""The `recipe` job: runs named stages in order inside one run directory, then writes a report.

Each stage is an ordinary job config (config.stages.<name>, resolved by its own stage) run in <run>/<name>; the
string "{run}" inside any of its values is replaced by the run directory, which is how a stage names another's
outputs (a parent run, shards). A stage whose summary.json exists is done and is skipped on a re-run; an interrupted
training stage resumes from its own latest checkpoint. Stage outputs are plain files (JSONL shards, sentencepiece
model, orbax checkpoints with run.json, eval JSON), so any stage can also be run alone with its own config.
"""
import dataclasses
import json
from pathlib import Path
from typing import Any, Literal, Mapping

import ml_collections

from dsmath import config as config_lib
from dsmath.jobs import SUMMARY, run_job


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  accuracy: tuple[tuple[str, str], ...] = ()  # (label, eval stage): held-out accuracy after each stage
  pass_maj: tuple[tuple[str, str], ...] = ()  # (label, eval stage): Pass@K / Maj@K curves


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  job: Literal["recipe"] = "recipe"
  workdir: str = ""
  stages: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {name: a job config}
  stage_order: tuple[str, ...] = ()
  report: ReportConfig = config_lib.sub(ReportConfig)

  def __post_init__(self):
    missing = [name for name in self.stage_order if name not in self.stages]
    if missing:
      raise ValueError(f"stage_order names stage(s) {missing} missing from stages (defined: {sorted(self.stages)})")
    for name, stage in self.stages.items():
      if not isinstance(stage, Mapping) or not isinstance(stage.get("job"), str):
        raise ValueError(f"stages.{name} must be a job config with a `job` key")
    unknown = sorted({s for _, s in self.report.accuracy + self.report.pass_maj} - set(self.stages))
    if unknown:
      raise ValueError(f"report names stage(s) {unknown} missing from stages")


def fill_run_dir(config: Mapping, run_dir: str) -> ml_collections.ConfigDict:
  """A copy of config with "{run}" replaced by run_dir in every string (also inside lists)."""
  def fill(v):
    if isinstance(v, str):
      return v.replace("{run}", run_dir)
    if isinstance(v, (list, tuple)):
      return type(v)(fill(x) for x in v)
    if isinstance(v, dict):
      return {k: fill(x) for k, x in v.items()}
    return v
  return ml_collections.ConfigDict(fill(config_lib.to_dict(config)))


def run(config, workdir: str) -> dict:
  cfg = config_lib.resolve(RecipeConfig, config)
  run_dir = str(Path(workdir).resolve())
  summaries, timings = {}, {}
  for i, name in enumerate(cfg.stage_order, 1):
    stage_dir = Path(run_dir) / name
    done = stage_dir / SUMMARY
    if done.exists():
      summaries[name] = json.loads(done.read_text())
      timings[name] = summaries[name].get("job_seconds", 0.0)
      print(f"[recipe {i}/{len(cfg.stage_order)}] {name}: done already ({done})", flush=True)
      continue
    stage = fill_run_dir(cfg.stages[name], run_dir)
    print(f"[recipe {i}/{len(cfg.stage_order)}] {name} ({stage.job}) -> {stage_dir}", flush=True)
    summaries[name] = run_job(stage, str(stage_dir))
    timings[name] = summaries[name]["job_seconds"]
    print(f"[recipe {i}/{len(cfg.stage_order)}] {name}: {timings[name]:.0f} s", flush=True)
  from dsmath import report  # matplotlib only once there is something to plot
  path = report.write_recipe_report(cfg, run_dir, summaries, timings)
  print(f"report: {path}", flush=True)
  return {"stages": list(cfg.stage_order), "seconds": timings, "report": str(path)}
