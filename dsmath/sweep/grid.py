"""A sweep config -> its cells: the grid (product of axes) over a pipeline of stages, as plain data.

A sweep config (configs/sweep_*.py, `get_config()` -> ConfigDict) is checked against SweepConfig (below) once, by
whichever entry point receives it (run_sweep, aggregate_sweep, expand); it holds:
  name         str, used in reports.
  sweep_dir    run directory of the whole sweep (experiments/sweep.py --sweep_dir wins).
  results_dir  "" or a folder (e.g. results/table6) that receives a copy of the tables, plots and the command.
  parallel     cells run at once (0 = auto: min(2, cpu count)).
  stage_timeout_s  0 = none; else a stage running longer is killed and reported as failed.
  setup        [stage]: run once, in order, before any cell, in <sweep_dir>/_setup/<name>.
  stages       [stage]: run in order for every cell, in <sweep_dir>/<cell>/<name>.
  axes         [axis]: the grid is their product (cells are named `axis=level__axis=level`).
  aggregate    what to tabulate and plot (dsmath.sweep.tables).

A stage: {name, config (a config file, optionally `file.py:arg` for get_config(arg)), overrides {dotted key: value},
module (default "experiments.run"; the Python module run as `python -m <module> --config ... --workdir ...`),
enabled (default True)}. Its command is
  python -m <module> --config <config> --config.<key>=<value> ... --workdir <stage dir>

An axis is either {name, levels: [{name, set: {key: value}}]} or {name, values: [v...], keys: [key...]} (each value
sets every key, e.g. seeds). Keys address stages: `<stage>/<dotted config key>` sets an override of one stage's job
config; `<stage>:<field>` sets a field of the stage itself (`config`, `module`, `enabled`).
String values (overrides, `config`) may hold placeholders: {sweep}, {cell} and {<stage name>} (that stage's run
directory, setup stages included), filled in once the cell is known.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import string
from pathlib import Path
from typing import Any, Mapping, Sequence

from dsmath import config as config_lib

DEFAULT_MODULE = "experiments.run"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEVEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """A stage as the sweep config declares it (placeholders unfilled)."""
  name: str = ""
  config: str = ""  # a config file, optionally `file.py:arg`
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {dotted config key: value}
  module: str = DEFAULT_MODULE
  enabled: bool = True

  def __post_init__(self):
    if not _NAME.match(self.name):
      raise ValueError(f"name must be an identifier, got {self.name!r}")
    if not self.config:
      raise ValueError("config is empty (a configs/*.py file, optionally with ':arg')")


@dataclasses.dataclass(frozen=True)
class LevelSpec:
  name: str = ""
  set: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {'<stage>/<key>' | '<stage>:<field>': value}

  def __post_init__(self):
    if not _LEVEL.match(self.name):
      raise ValueError(f"name must match {_LEVEL.pattern}, got {self.name!r}")


@dataclasses.dataclass(frozen=True)
class AxisSpec:
  """Either `levels`, or `values` each setting every key of `keys` (e.g. seeds)."""
  name: str = ""
  levels: tuple[LevelSpec, ...] = ()
  values: tuple[Any, ...] = ()
  keys: tuple[str, ...] = ()

  def __post_init__(self):
    if not _NAME.match(self.name):
      raise ValueError(f"name must be an identifier, got {self.name!r}")
    if bool(self.levels) == bool(self.values):
      raise ValueError("needs either 'levels' or 'values' (+ 'keys'), not both or neither")
    if self.levels and self.keys:
      raise ValueError("'keys' goes with 'values', not with 'levels'")
    if self.values and not self.keys:
      raise ValueError("keys is empty: each value must set at least one key")
    names = [n for n, _ in self.resolved_levels()]
    if len(set(names)) != len(names):
      raise ValueError(f"duplicate level names {names}")

  def resolved_levels(self) -> list[tuple[str, dict]]:
    if self.levels:
      return [(level.name, dict(level.set)) for level in self.levels]
    return [(str(v), {k: v for k in self.keys}) for v in self.values]


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A scalar per cell: from <stage dir>/summary.json at the dotted `path`, or, with `file` (a JSONL of
  {step, ...} records), the value of key `path` in the last record holding it."""
  name: str
  stage: str
  path: str
  file: str = ""
  step_key: str = "step"
  lower_is_better: bool = False
  summary: str = "summary.json"  # the JSON read without `file`, relative to the stage dir (a recipe: "grpo/...")
  paired: bool = True  # in aggregate.compare_to's paired table (off for a value the groups share by design)
  # a cell whose summary lacks `path` has no value (e.g. a reward model's accuracy in a rule-reward arm), instead of
  # an error naming the file
  optional: bool = False


@dataclasses.dataclass(frozen=True)
class CurveSpec:
  """Per cell the (step, value) series of `key` in the JSONL `file` of the stage."""
  name: str
  stage: str
  file: str
  key: str
  step_key: str = "step"
  title: str = ""


@dataclasses.dataclass(frozen=True)
class AggregateConfig:
  group_by: tuple[str, ...] = ()  # axes whose levels are the table's rows; the other axes are replicates
  metrics: tuple[MetricSpec, ...] = ()
  curves: tuple[CurveSpec, ...] = ()
  confidence: float = 0.95
  # A group (e.g. "method=grpo_os") every other group is compared with, replicate by replicate (cells matched on
  # the levels of the axes not in group_by, e.g. the seed): paired differences cancel what replicates share.
  compare_to: str = ""
  # Particular paired differences, each "<group> vs <baseline>" (e.g. "arm=two vs arm=one"), matched the same way:
  # for grids with several baselines (each arm of Figure 6 against its own single-iteration arm).
  comparisons: tuple[str, ...] = ()

  def __post_init__(self):
    if not 0 < self.confidence < 1:
      raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
    for c in self.comparisons:
      if len(c.split(" vs ")) != 2:
        raise ValueError(f"comparisons: {c!r} is not '<group> vs <baseline>'")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  name: str = ""
  sweep_dir: str = ""
  results_dir: str = ""
  parallel: int = 0  # 0 = auto
  stage_timeout_s: float = 0.0  # 0 = none
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # extra environment of the stage processes
  setup: tuple[StageSpec, ...] = ()
  stages: tuple[StageSpec, ...] = ()
  axes: tuple[AxisSpec, ...] = ()
  aggregate: AggregateConfig = config_lib.sub(AggregateConfig)

  def __post_init__(self):
    names = [s.name for s in self.setup + self.stages]
    if len(set(names)) != len(names) or {"sweep", "cell"} & set(names):
      raise ValueError(f"stage names must be unique and not 'sweep'/'cell': {names}")
    axes = [a.name for a in self.axes]
    if len(set(axes)) != len(axes):
      raise ValueError(f"duplicate axis names: {axes}")


def resolve_sweep_config(config: Any) -> SweepConfig:
  """A sweep config (ConfigDict, dict or SweepConfig) checked against the schema at every depth."""
  if isinstance(config, SweepConfig):
    return config
  return config_lib.resolve(SweepConfig, config)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One subprocess of a cell: `python -m module --config config --config.k=v ... --workdir workdir`."""
  name: str
  config: str
  overrides: tuple[tuple[str, Any], ...] = ()
  module: str = DEFAULT_MODULE
  enabled: bool = True
  workdir: str = ""

  def command(self, python: str) -> list[str]:
    cmd = [python, "-m", self.module, f"--config={self.config}"]
    cmd += [f"--config.{key}={format_value(value)}" for key, value in self.overrides]
    return cmd + [f"--workdir={self.workdir}"]


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str
  levels: tuple[tuple[str, str], ...]  # (axis, level name) in axis order
  stages: tuple[Stage, ...]
  directory: str


def format_value(value: Any) -> str:
  """A command-line value for ml_collections.config_flags (which parses it with the existing field's type)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def _apply(stages: dict[str, dict], key: str, value, where: str) -> None:
  if "/" in key:
    stage, dotted = key.split("/", 1)
    if stage not in stages:
      raise KeyError(f"{where}: key {key!r} names stage {stage!r}; stages are {list(stages)}")
    stages[stage]["overrides"][dotted] = value
  elif ":" in key:
    stage, field = key.split(":", 1)
    if stage not in stages:
      raise KeyError(f"{where}: key {key!r} names stage {stage!r}; stages are {list(stages)}")
    if field not in ("config", "module", "enabled"):
      raise KeyError(f"{where}: key {key!r}: a stage field must be config, module or enabled")
    stages[stage][field] = value
  else:
    raise KeyError(f"{where}: key {key!r} must be '<stage>/<config key>' or '<stage>:<field>'")


class _Placeholders(dict):
  def __init__(self, values, where):
    super().__init__(values)
    self.where = where

  def __missing__(self, key):
    raise KeyError(f"{self.where}: unknown placeholder {{{key}}}; known: {sorted(self)}")


def _fill(value, placeholders: _Placeholders):
  if isinstance(value, str):
    return string.Formatter().vformat(value, (), placeholders)
  if isinstance(value, list):
    return [_fill(v, placeholders) for v in value]
  return value


def _resolve_stages(specs: Sequence[dict], base_dir: Path, placeholders: dict, where: str) -> tuple[Stage, ...]:
  dirs = {s["name"]: str(base_dir / s["name"]) for s in specs}
  ph = _Placeholders({**placeholders, **{n: d for n, d in dirs.items() if any(
      x["name"] == n and x["enabled"] for x in specs)}}, where)
  out = []
  for s in specs:
    if not s["enabled"]:
      out.append(Stage(s["name"], s["config"], (), s["module"], False, dirs[s["name"]]))
      continue
    overrides = tuple((k, _fill(v, ph)) for k, v in s["overrides"].items())
    out.append(Stage(s["name"], _fill(s["config"], ph), overrides, s["module"], True, dirs[s["name"]]))
  return tuple(out)


def _specs(stages: Sequence[StageSpec]) -> list[dict]:
  """Mutable copies of the declared stages (an axis level overrides their fields and overrides)."""
  return [{"name": s.name, "config": s.config, "overrides": dict(s.overrides), "module": s.module,
           "enabled": s.enabled} for s in stages]


def setup_stages(config, sweep_dir: str | Path) -> tuple[Stage, ...]:
  cfg = resolve_sweep_config(config)
  return _resolve_stages(_specs(cfg.setup), Path(sweep_dir) / "_setup", {"sweep": str(sweep_dir)}, "config.setup")


def expand(config, sweep_dir: str | Path) -> list[Cell]:
  """Every cell of the grid, in axis-product order (the first axis varies slowest)."""
  cfg = resolve_sweep_config(config)
  if not cfg.stages:
    raise ValueError("config.stages is empty: a cell needs at least one stage")
  sweep_dir = Path(sweep_dir)
  setup_dirs = {s.name: str(sweep_dir / "_setup" / s.name) for s in cfg.setup}
  axes = [(a.name, a.resolved_levels()) for a in cfg.axes]
  cells = []
  for combo in itertools.product(*[levels for _, levels in axes]):
    levels = tuple((axis, lname) for (axis, _), (lname, _) in zip(axes, combo))
    name = "__".join(f"{a}={l}" for a, l in levels) or "single"
    stages = {s["name"]: s for s in _specs(cfg.stages)}
    for (axis, _), (lname, sets) in zip(axes, combo):
      for key, value in sets.items():
        _apply(stages, key, value, f"axis {axis} level {lname}")
    cell_dir = sweep_dir / name
    resolved = _resolve_stages(list(stages.values()), cell_dir,
                               {"sweep": str(sweep_dir), "cell": str(cell_dir), **setup_dirs}, f"cell {name}")
    cells.append(Cell(name, levels, resolved, str(cell_dir)))
  return cells
