"""Aggregation: t-intervals against scipy's reference, metric paths, JSONL series, tables and plots."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dsmath.sweep import Cell, Stage, aggregate, get_path, markdown_table, read_jsonl_series, t_interval
from dsmath.sweep.plots import plot_curve
from dsmath.sweep.tables import provenance_lines


def test_t_interval_matches_scipy():
  x = [0.31, 0.35, 0.29, 0.40]
  r = t_interval(x)
  lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
  assert r["n"] == 4 and r["mean"] == pytest.approx(np.mean(x))
  assert (r["low"], r["high"]) == pytest.approx((lo, hi), rel=1e-12)
  r90 = t_interval(x, 0.90)
  assert r90["half_width"] < r["half_width"]
  one = t_interval([1.5])
  assert one["mean"] == 1.5 and math.isnan(one["half_width"])
  with pytest.raises(ValueError):
    t_interval([])


def test_get_path_and_errors():
  obj = {"sets": {"m": {"bpc": 1.25}}, "xs": [3, 4]}
  assert get_path(obj, "sets.m.bpc") == 1.25 and get_path(obj, "xs.1") == 4
  with pytest.raises(KeyError, match=r"no 'bcp'.*available: \['bpc'\]"):
    get_path(obj, "sets.m.bcp", "f.json")


def test_read_jsonl_series_last_record_wins(tmp_path):
  p = tmp_path / "metrics.jsonl"
  p.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3}\n')
  assert read_jsonl_series(p, "loss") == {1: 3.0, 2: 1.5}
  p.write_text('{"step": 1, "loss": 3.0}\nnot json\n')
  with pytest.raises(ValueError, match="metrics.jsonl:2"):
    read_jsonl_series(p, "loss")


def _make_cells(tmp_path):
  cells = []
  for arm, base in (("a", 1.0), ("b", 2.0)):
    for seed in range(3):
      d = tmp_path / f"arm={arm}__seed={seed}" / "train"
      d.mkdir(parents=True)
      (d / "summary.json").write_text(json.dumps({"final": {"loss": base + 0.1 * seed}}))
      with (d / "metrics.jsonl").open("w") as f:
        for step in (10, 20, 30):
          f.write(json.dumps({"step": step, "loss": base + seed - step / 100}) + "\n")
      cells.append(Cell(f"arm={arm}__seed={seed}", (("arm", arm), ("seed", str(seed))),
                        (Stage("train", "c.py", workdir=str(d)),), str(d.parent)))
  return cells


def test_aggregate_groups_over_seeds_and_plots(tmp_path):
  cells = _make_cells(tmp_path)
  spec = {"group_by": ["arm"],
          "metrics": [{"name": "final loss", "stage": "train", "path": "final.loss", "lower_is_better": True},
                      {"name": "last logged", "stage": "train", "file": "metrics.jsonl", "path": "loss"}],
          "curves": [{"name": "loss", "stage": "train", "file": "metrics.jsonl", "key": "loss"}]}
  complete = {c.name for c in cells} - {"arm=b__seed=2"}
  res = aggregate(cells, spec, complete)
  a = res["metrics"]["final loss"]["groups"]["arm=a"]
  assert a["n"] == 3 and a["mean"] == pytest.approx(1.1) and a["values"] == pytest.approx([1.0, 1.1, 1.2])
  assert res["metrics"]["final loss"]["groups"]["arm=b"]["n"] == 2
  assert res["metrics"]["last logged"]["groups"]["arm=a"]["mean"] == pytest.approx(1.0 + 1.0 - 0.3)
  curve = res["curves"]["loss"]["groups"]["arm=a"]
  assert curve["steps"] == [10, 20, 30] and curve["mean"] == pytest.approx([1.9, 1.8, 1.7])
  assert res["missing"] == ["arm=b__seed=2"]
  md = markdown_table(res)
  assert "| arm=a | 1.1000 ±" in md and "**(best)**" in md.splitlines()[2] and "arm=b__seed=2" in md
  # The summaries carry no provenance (older stages): counted as unknown, and a table from mixed commits says so.
  assert res["stage_commits"] == [{"commit": "unknown", "dirty": False, "stages": 5}]
  summary = cells[0].stages[0].workdir + "/summary.json"
  Path(summary).write_text(json.dumps({"final": {"loss": 1.0}, "provenance": {"commit": "abc", "dirty": True}}))
  res = aggregate(cells, spec, complete)
  assert res["stage_commits"] == [{"commit": "abc", "dirty": True, "stages": 1},
                                  {"commit": "unknown", "dirty": False, "stages": 4}]
  lines = provenance_lines({**res, "provenance": None})
  assert "## Provenance" in lines and any("`abc` (dirty tree) (1 stage(s))" in line for line in lines)
  assert any("different code versions" in line for line in lines)
  plot_curve(res["curves"]["loss"], tmp_path / "loss.png")
  assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_differences_match_replicates(tmp_path):
  cells = _make_cells(tmp_path)  # arm b = arm a + 1.0 on every seed: a paired difference of exactly 1, no spread
  spec = {"group_by": ["arm"], "compare_to": "arm=a",
          "metrics": [{"name": "final loss", "stage": "train", "path": "final.loss", "lower_is_better": True}]}
  complete = {c.name for c in cells} - {"arm=a__seed=0"}
  res = aggregate(cells, spec, complete)
  d = res["paired"]["metrics"]["final loss"]["arm=b"]
  assert d["n"] == 2 and d["replicates"] == ["seed=1", "seed=2"]  # seed 0 has no baseline cell: not paired
  assert d["values"] == pytest.approx([1.0, 1.0]) and d["half_width"] == pytest.approx(0.0)
  unpaired = res["metrics"]["final loss"]["groups"]
  assert unpaired["arm=b"]["mean"] - unpaired["arm=a"]["mean"] == pytest.approx(0.95)  # unmatched means differ
  assert "Paired difference from arm=a" in markdown_table(res) and "| arm=b | +1.0000 ± 0.0000" in markdown_table(res)
  spec["metrics"].append({"name": "shared", "stage": "train", "path": "final.loss", "paired": False})
  assert list(aggregate(cells, spec, complete)["paired"]["metrics"]) == ["final loss"]
  with pytest.raises(KeyError, match="compare_to='arm=c'"):
    aggregate(cells, {**spec, "compare_to": "arm=c"}, complete)


def test_comparisons_pair_each_group_with_its_own_baseline(tmp_path):
  cells = _make_cells(tmp_path)  # arm b = arm a + 1.0 on every seed
  spec = {"group_by": ["arm"], "comparisons": ["arm=b vs arm=a", "arm=a vs arm=b"],
          "metrics": [{"name": "final loss", "stage": "train", "path": "final.loss", "lower_is_better": True}]}
  res = aggregate(cells, spec, {c.name for c in cells})
  got = res["comparisons"]["metrics"]["final loss"]
  assert got["arm=b vs arm=a"]["values"] == pytest.approx([1.0, 1.0, 1.0])
  assert got["arm=a vs arm=b"]["mean"] == pytest.approx(-1.0)
  table = markdown_table(res)
  assert "| arm=b vs arm=a | +1.0000 ± 0.0000" in table and "| arm=a vs arm=b | -1.0000" in table
  with pytest.raises(KeyError, match="'arm=c' is not a group"):
    aggregate(cells, {**spec, "comparisons": ["arm=c vs arm=a"]}, {c.name for c in cells})
  with pytest.raises(ValueError, match="is not '<group> vs <baseline>'"):
    aggregate(cells, {**spec, "comparisons": ["arm=b minus arm=a"]}, {c.name for c in cells})


def test_optional_metric_leaves_out_cells_without_it(tmp_path):
  cells = _make_cells(tmp_path)
  summary = Path(cells[0].stages[0].workdir) / "summary.json"  # arm a, seed 0: no final.loss (a rule-reward arm's RM)
  summary.write_text(json.dumps({"final": {}}))
  spec = {"group_by": ["arm"], "metrics": [{"name": "final loss", "stage": "train", "path": "final.loss"}]}
  with pytest.raises(KeyError, match="no 'loss' in path 'final.loss'"):
    aggregate(cells, spec, {c.name for c in cells})
  spec["metrics"][0]["optional"] = True
  res = aggregate(cells, spec, {c.name for c in cells})["metrics"]["final loss"]["groups"]
  assert res["arm=a"]["cells"] == ["arm=a__seed=1", "arm=a__seed=2"] and res["arm=a"]["mean"] == pytest.approx(1.15)
  assert res["arm=b"]["n"] == 3


def test_metric_from_a_recipe_stage_summary(tmp_path):
  cells = _make_cells(tmp_path)
  for i, c in enumerate(cells):  # a recipe cell keeps each stage's summary in a subdirectory
    (Path(c.stages[0].workdir) / "grpo").mkdir()
    (Path(c.stages[0].workdir) / "grpo" / "summary.json").write_text(json.dumps({"gain": {"gain": 0.1 * i}}))
  spec = {"group_by": ["arm"], "metrics": [{"name": "gain", "stage": "train", "path": "gain.gain",
                                            "summary": "grpo/summary.json"}]}
  res = aggregate(cells, spec, {c.name for c in cells})
  assert res["metrics"]["gain"]["groups"]["arm=b"]["values"] == pytest.approx([0.3, 0.4, 0.5])
