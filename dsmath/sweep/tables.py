"""Aggregation over a sweep's cells: a metric per cell -> mean and 95% t-interval per group, as Markdown + JSON, and
metric-vs-step curves with interval bands.

config.aggregate (dsmath.sweep.grid.AggregateConfig):
  group_by   [axis name]: rows of the table; the other axes (seeds) are the replicates averaged over.
  metrics    [MetricSpec {name, stage, path, file?, summary?, lower_is_better?}]: a scalar per cell. From <stage
             dir>/<summary> (default summary.json; "grpo/summary.json" reads a recipe's stage) at the dotted
             `path` (list indices allowed: `a.0.b`), or, with file (a JSONL of
             {step, ...} records, e.g. metrics.jsonl), the value of key `path` in the last record holding it.
  curves     [CurveSpec {name, stage, file, key, step_key?, title?}]: per cell the (step, value) series of `key` in
             the JSONL `file` of the stage (the last record of each step wins: resumed runs re-log steps); averaged
             over replicates at the steps every replicate has.
  confidence 0.95 by default.
  compare_to a group name: also every other group's paired difference from it per metric (cells matched on their
             replicate levels, e.g. the same seed), mean and t-interval of the differences.
The results carry their provenance: the aggregating process's, and the code versions the stages ran at (read from
their summaries), so a table mixing commits says so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from dsmath import config as config_lib
from dsmath.sweep.grid import AggregateConfig, Cell, MetricSpec


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
  """Mean and the two-sided Student-t confidence interval of the mean: mean +- t_{(1+c)/2, n-1} * s / sqrt(n).

  n = 1 gives an unbounded interval (reported as NaN half-width): one seed says nothing about seed variance.
  """
  x = np.asarray([float(v) for v in values], dtype=np.float64)
  n = int(x.size)
  if n == 0:
    raise ValueError("t_interval of no values")
  mean = float(x.mean())
  if n == 1:
    return {"mean": mean, "half_width": float("nan"), "low": float("nan"), "high": float("nan"), "std": float("nan"),
            "n": 1, "values": x.tolist()}
  std = float(x.std(ddof=1))
  half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n))
  return {"mean": mean, "half_width": half, "low": mean - half, "high": mean + half, "std": std, "n": n,
          "values": x.tolist()}


def get_path(obj: Any, dotted: str, where: str = "") -> Any:
  """obj['a']['b'][0] for 'a.b.0'; a missing key fails naming the key, its parent's keys and `where`."""
  cur = obj
  for part in dotted.split("."):
    if isinstance(cur, Mapping) and part in cur:
      cur = cur[part]
    elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
      cur = cur[int(part)]
    else:
      keys = sorted(cur) if isinstance(cur, Mapping) else f"a {type(cur).__name__}"
      raise KeyError(f"{where}: no {part!r} in path {dotted!r} (available: {keys})")
  return cur


def read_jsonl_series(path: str | Path, key: str, step_key: str = "step") -> dict[int, float]:
  """{step: value of key} over records that have both (the last record of a step wins)."""
  out = {}
  for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{lineno}: not JSON ({e})") from None
    if key in record and step_key in record and record[key] is not None:
      out[int(record[step_key])] = float(record[key])
  return out


def _stage_dir(cell: Cell, stage: str) -> Path:
  for s in cell.stages:
    if s.name == stage:
      return Path(s.workdir)
  raise KeyError(f"aggregate: stage {stage!r} not in cell {cell.name} (stages: {[s.name for s in cell.stages]})")


def _has_stage(cell: Cell, stage: str) -> bool:
  """False when the stage is disabled in this cell (e.g. no stage 1 in a one-stage arm): the cell has no value."""
  return any(s.name == stage and s.enabled for s in cell.stages)


def cell_metric(cell: Cell, spec: MetricSpec) -> float:
  d = _stage_dir(cell, spec.stage)
  if spec.file:
    series = read_jsonl_series(d / spec.file, spec.path, spec.step_key)
    if not series:
      raise KeyError(f"{d / spec.file}: no record holds {spec.path!r}")
    return series[max(series)]
  summary = json.loads((d / spec.summary).read_text())
  return float(get_path(summary, spec.path, str(d / spec.summary)))


def _metric_or_none(cell: Cell, spec: MetricSpec) -> float | None:
  try:
    return cell_metric(cell, spec)
  except KeyError:
    return None


def _group_key(cell: Cell, group_by: Sequence[str]) -> str:
  levels = dict(cell.levels)
  unknown = [a for a in group_by if a not in levels]
  if unknown:
    raise KeyError(f"aggregate.group_by names unknown axes {unknown}; axes are {list(levels)}")
  return ",".join(f"{a}={levels[a]}" for a in group_by) or "all"


def aggregate(cells: Sequence[Cell], agg_config, complete: set[str]) -> dict:
  """{metrics: {name: {group: t_interval + cells}}, curves: {name: {group: {steps, mean, low, high, n}}},
  missing: [cell names left out], stage_commits}. Only cells in `complete` (every stage finished) are used.
  agg_config: an AggregateConfig or its mapping form."""
  cfg = agg_config if isinstance(agg_config, AggregateConfig) else config_lib.resolve(
      AggregateConfig, agg_config, "config.aggregate")
  conf = cfg.confidence
  group_by = list(cfg.group_by)
  groups: dict[str, list[Cell]] = {}
  for cell in cells:
    groups.setdefault(_group_key(cell, group_by), [])
    if cell.name in complete:
      groups[_group_key(cell, group_by)].append(cell)
  out = {"confidence": conf, "group_by": group_by, "groups": list(groups), "metrics": {}, "curves": {},
         "missing": sorted(c.name for c in cells if c.name not in complete),
         "stage_commits": stage_commits([c for c in cells if c.name in complete])}
  for spec in cfg.metrics:
    table = {}
    for g, members in groups.items():
      read = _metric_or_none if spec.optional else cell_metric
      found = {c.name: read(c, spec) for c in members if _has_stage(c, spec.stage)}
      found = {name: v for name, v in found.items() if v is not None}
      if found:
        values = list(found.values())
        table[g] = {**t_interval(values, conf), "cells": list(found)}
    out["metrics"][spec.name] = {"spec": config_lib.to_dict(spec), "groups": table}
  for spec in cfg.curves:
    table = {}
    for g, members in groups.items():
      series = [read_jsonl_series(_stage_dir(c, spec.stage) / spec.file, spec.key, spec.step_key)
                for c in members if _has_stage(c, spec.stage)]
      series = [s for s in series if s]
      if not series:
        continue
      steps = sorted(set.intersection(*[set(s) for s in series]))
      rows = [t_interval([s[step] for s in series], conf) for step in steps]
      table[g] = {"steps": steps, "mean": [r["mean"] for r in rows], "low": [r["low"] for r in rows],
                  "high": [r["high"] for r in rows], "n": len(series)}
    out["curves"][spec.name] = {"spec": config_lib.to_dict(spec), "groups": table}
  if cfg.compare_to:
    out["paired"] = paired_differences(out, cells, cfg, conf)
  if cfg.comparisons:
    out["comparisons"] = paired_comparisons(out, cells, cfg, conf)
  return out


def _replicate_values(result: Mapping, cells: Sequence[Cell], cfg: AggregateConfig, spec) -> dict:
  """{group: {replicate key: value}} of one metric; the replicate key is the cell's levels outside group_by."""
  replicate = {c.name: ",".join(f"{a}={v}" for a, v in c.levels if a not in cfg.group_by) for c in cells}
  return {g: dict(zip((replicate[n] for n in r["cells"]), r["values"]))
          for g, r in result["metrics"][spec.name]["groups"].items()}


def _paired(values: Mapping, base: Mapping, conf: float) -> dict | None:
  keys = [k for k in values if k in base]
  return {**t_interval([values[k] - base[k] for k in keys], conf), "replicates": keys} if keys else None


def paired_differences(result: Mapping, cells: Sequence[Cell], cfg: AggregateConfig, conf: float) -> dict:
  """{baseline, metrics: {name: {group: t_interval of (group - baseline) over matched replicates}}}, from the
  per-cell values in aggregate()'s `result`; cells are matched on the levels of the axes not in group_by."""
  if cfg.compare_to not in result["groups"]:
    raise KeyError(f"aggregate.compare_to={cfg.compare_to!r} is not a group; groups are {sorted(result['groups'])}")
  out = {"baseline": cfg.compare_to, "metrics": {}}
  for spec in (m for m in cfg.metrics if m.paired):
    by_group = _replicate_values(result, cells, cfg, spec)
    base = by_group.get(cfg.compare_to, {})
    out["metrics"][spec.name] = {g: d for g, values in by_group.items() if g != cfg.compare_to
                                 for d in [_paired(values, base, conf)] if d is not None}
  return out


def paired_comparisons(result: Mapping, cells: Sequence[Cell], cfg: AggregateConfig, conf: float) -> dict:
  """{metrics: {name: {"<group> vs <baseline>": t_interval of the matched differences}}} for aggregate.comparisons."""
  pairs = [tuple(c.split(" vs ")) for c in cfg.comparisons]
  for pair in pairs:
    for g in pair:
      if g not in result["groups"]:
        raise KeyError(f"aggregate.comparisons: {g!r} is not a group; groups are {sorted(result['groups'])}")
  out = {"metrics": {}}
  for spec in (m for m in cfg.metrics if m.paired):
    by_group = _replicate_values(result, cells, cfg, spec)
    out["metrics"][spec.name] = {f"{g} vs {b}": d for g, b in pairs
                                 for d in [_paired(by_group.get(g, {}), by_group.get(b, {}), conf)] if d is not None}
  return out


def stage_commits(cells: Sequence[Cell]) -> list[dict]:
  """[{commit, dirty, stages}]: the code versions the enabled stages of `cells` ran at, from the provenance in
  their summaries (dsmath.jobs writes it); stages whose summary has none are counted under commit "unknown"."""
  counts: dict[tuple, int] = {}
  for cell in cells:
    for stage in cell.stages:
      path = Path(stage.workdir) / "summary.json"
      if not stage.enabled or not path.exists():
        continue
      prov = json.loads(path.read_text()).get("provenance") or {}
      key = (prov.get("commit", "unknown"), bool(prov.get("dirty", False)))
      counts[key] = counts.get(key, 0) + 1
  return [{"commit": c, "dirty": d, "stages": n} for (c, d), n in sorted(counts.items())]


def provenance_lines(result: Mapping) -> list[str]:
  """The results' provenance as Markdown: the aggregating process's and the commits the stages ran at."""
  from dsmath.runs import provenance_markdown
  lines = provenance_markdown(result.get("provenance"))
  commits = result.get("stage_commits") or []
  if commits:
    lines.append("- stages ran at: " + "; ".join(
        f"`{c['commit']}`{' (dirty tree)' if c['dirty'] else ''} ({c['stages']} stage(s))" for c in commits))
    if len(commits) > 1:
      lines.append("- **the stages ran at different code versions**: compare with care")
  return lines


def _fmt(x: float, digits: int) -> str:
  return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(result: Mapping, digits: int = 4) -> str:
  """Rows = groups, columns = metrics: `mean ± half-width [low, high] (n=…)`; a best mark per column."""
  names = list(result["metrics"])
  conf = int(round(100 * result["confidence"]))
  header = "| group | " + " | ".join(names) + " |"
  lines = [header, "|" + "---|" * (len(names) + 1)]
  best = {}
  for name in names:
    spec, groups = result["metrics"][name]["spec"], result["metrics"][name]["groups"]
    if len(groups) > 1:
      pick = min if spec.get("lower_is_better") else max
      best[name] = pick(groups, key=lambda g: groups[g]["mean"])
  for g in result["groups"]:
    cells = []
    for name in names:
      r = result["metrics"][name]["groups"].get(g)
      if r is None:
        cells.append("(no complete cell)")
        continue
      mark = " **(best)**" if best.get(name) == g else ""
      cells.append(f"{_fmt(r['mean'], digits)} ± {_fmt(r['half_width'], digits)} "
                   f"[{_fmt(r['low'], digits)}, {_fmt(r['high'], digits)}] (n={r['n']}){mark}")
    lines.append(f"| {g} | " + " | ".join(cells) + " |")
  note = (f"\nMean ± half-width of the {conf}% Student-t interval over replicates "
          f"(n = number of completed replicates).")
  dirs = {name: ("lower is better" if result["metrics"][name]["spec"].get("lower_is_better") else "higher is better")
          for name in names}
  note += " " + "; ".join(f"{n}: {d}" for n, d in dirs.items()) + "." if names else ""
  if result["missing"]:
    note += f"\nMissing (failed or not run) cells: {', '.join(result['missing'])}."
  return "\n".join(lines) + "\n" + note + "\n" + _paired_table(result, digits) + _comparisons_table(result, digits)


def _paired_table(result: Mapping, digits: int) -> str:
  paired = result.get("paired")
  if not paired:
    return ""
  names = list(paired["metrics"])
  conf = int(round(100 * result["confidence"]))
  lines = ["", f"Paired difference from {paired['baseline']} (same replicate: mean ± half-width [{conf}% t-interval]"
           " (n); an interval excluding 0 resolves the difference):", "",
           "| group | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
  for g in result["groups"]:
    if g == paired["baseline"]:
      continue
    cells = []
    for name in names:
      r = paired["metrics"][name].get(g)
      cells.append(_difference(r, digits))
    lines.append(f"| {g} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _difference(r: Mapping | None, digits: int) -> str:
  """A paired difference: mean ± half-width [interval] (n), or n/a."""
  if r is None:
    return "n/a"
  return (f"{r['mean']:+.{digits}f} ± {_fmt(r['half_width'], digits)} [{_fmt(r['low'], digits)}, "
          f"{_fmt(r['high'], digits)}] (n={r['n']})")


def _comparisons_table(result: Mapping, digits: int) -> str:
  comp = result.get("comparisons")
  if not comp:
    return ""
  names = list(comp["metrics"])
  conf = int(round(100 * result["confidence"]))
  rows = list(dict.fromkeys(k for name in names for k in comp["metrics"][name]))
  lines = ["", f"Paired differences, group minus baseline (same replicate: mean ± half-width [{conf}% t-interval] "
           "(n); an interval excluding 0 resolves the difference):", "",
           "| group vs baseline | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
  for key in rows:
    cells = []
    for name in names:
      r = comp["metrics"][name].get(key)
      cells.append(_difference(r, digits))
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
