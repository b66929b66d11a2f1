"""A sweep config -> its cells: the grid (product of axes) over a pipeline of stages, as plain data.

A sweep config (configs/sweep_*.py, `get_config()` -> ConfigDict) holds:
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

DEFAULT_MODULE = "experiments.run"
STAGE_FIELDS = ("name", "config", "overrides", "module", "enabled")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEVEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


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


def to_plain(value):
  """ConfigDict / FrozenConfigDict / nested containers -> dicts, lists and scalars."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: to_plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_plain(v) for v in value]
  return value


def _stage_spec(raw: Mapping, where: str) -> dict:
  unknown = sorted(set(raw) - set(STAGE_FIELDS))
  if unknown:
    raise KeyError(f"{where}: unknown key(s) {unknown}; valid keys: {list(STAGE_FIELDS)}")
  name = raw.get("name", "")
  if not _NAME.match(name or ""):
    raise ValueError(f"{where}.name must be an identifier, got {name!r}")
  if not raw.get("config"):
    raise ValueError(f"{where}.config is empty (a configs/*.py file, optionally with ':arg')")
  return {"name": name, "config": raw["config"], "overrides": dict(raw.get("overrides") or {}),
          "module": raw.get("module") or DEFAULT_MODULE, "enabled": bool(raw.get("enabled", True))}


def _axis_levels(axis: Mapping, where: str) -> tuple[str, list[tuple[str, dict]]]:
  name = axis.get("name", "")
  if not _NAME.match(name or ""):
    raise ValueError(f"{where}.name must be an identifier, got {name!r}")
  if "levels" in axis:
    extra = sorted(set(axis) - {"name", "levels"})
    if extra:
      raise KeyError(f"{where}: unknown key(s) {extra} beside 'levels'")
    levels = []
    for i, level in enumerate(axis["levels"]):
      lname = str(level.get("name", ""))
      if not _LEVEL.match(lname):
        raise ValueError(f"{where}.levels[{i}].name must match {_LEVEL.pattern}, got {lname!r}")
      bad = sorted(set(level) - {"name", "set"})
      if bad:
        raise KeyError(f"{where}.levels[{i}]: unknown key(s) {bad}; valid: ['name', 'set']")
      levels.append((lname, dict(level.get("set") or {})))
  elif "values" in axis:
    extra = sorted(set(axis) - {"name", "values", "keys"})
    if extra:
      raise KeyError(f"{where}: unknown key(s) {extra} beside 'values' and 'keys'")
    keys = list(axis.get("keys") or [])
    if not keys:
      raise ValueError(f"{where}.keys is empty: each value must set at least one key")
    levels = [(str(v), {k: v for k in keys}) for v in axis["values"]]
  else:
    raise KeyError(f"{where} needs 'levels' or 'values' (+ 'keys')")
  if not levels:
    raise ValueError(f"{where} has no levels")
  names = [n for n, _ in levels]
  if len(set(names)) != len(names):
    raise ValueError(f"{where}: duplicate level names {names}")
  return name, levels


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


def setup_stages(config, sweep_dir: str | Path) -> tuple[Stage, ...]:
  cfg = to_plain(config)
  specs = [_stage_spec(s, f"config.setup[{i}]") for i, s in enumerate(cfg.get("setup") or [])]
  return _resolve_stages(specs, Path(sweep_dir) / "_setup", {"sweep": str(sweep_dir)}, "config.setup")


def expand(config, sweep_dir: str | Path) -> list[Cell]:
  """Every cell of the grid, in axis-product order (the first axis varies slowest)."""
  cfg = to_plain(config)
  sweep_dir = Path(sweep_dir)
  setup = [_stage_spec(s, f"config.setup[{i}]") for i, s in enumerate(cfg.get("setup") or [])]
  base = [_stage_spec(s, f"config.stages[{i}]") for i, s in enumerate(cfg.get("stages") or [])]
  if not base:
    raise ValueError("config.stages is empty: a cell needs at least one stage")
  names = [s["name"] for s in setup + base]
  if len(set(names)) != len(names) or {"sweep", "cell"} & set(names):
    raise ValueError(f"stage names must be unique and not 'sweep'/'cell': {names}")
  setup_dirs = {s["name"]: str(sweep_dir / "_setup" / s["name"]) for s in setup}
  axes = [_axis_levels(a, f"config.axes[{i}]") for i, a in enumerate(cfg.get("axes") or [])]
  if len({a for a, _ in axes}) != len(axes):
    raise ValueError(f"duplicate axis names: {[a for a, _ in axes]}")
  cells = []
  for combo in itertools.product(*[levels for _, levels in axes]):
    levels = tuple((axis, lname) for (axis, _), (lname, _) in zip(axes, combo))
    name = "__".join(f"{a}={l}" for a, l in levels) or "single"
    stages = {s["name"]: {**s, "overrides": dict(s["overrides"])} for s in base}
    for (axis, _), (lname, sets) in zip(axes, combo):
      for key, value in sets.items():
        _apply(stages, key, value, f"axis {axis} level {lname}")
    cell_dir = sweep_dir / name
    resolved = _resolve_stages(list(stages.values()), cell_dir,
                               {"sweep": str(sweep_dir), "cell": str(cell_dir), **setup_dirs}, f"cell {name}")
    cells.append(Cell(name, levels, resolved, str(cell_dir)))
  return cells
