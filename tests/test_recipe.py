"""The recipe runner: stages in order in one run directory, "{run}" filled in, finished stages skipped, a report."""
import json

import ml_collections
import pytest

from dsmath.data import materialize
from dsmath.jobs import run_job
from dsmath.recipe import fill_run_dir


def _recipe() -> ml_collections.ConfigDict:
  first = materialize.default_config()
  first.synthetic.num_train = 20
  first.code.max_chars = 20_000
  second = materialize.default_config()
  second.seed = 1
  second.synthetic.num_train = 10
  second.code.max_chars = 10_000
  c = ml_collections.ConfigDict()
  c.job = "recipe"
  c.stages = {"first": first, "second": second}
  c.stage_order = ["first", "second"]
  c.report = {}
  return c


def test_fill_run_dir_replaces_placeholders_everywhere():
  c = ml_collections.ConfigDict({"a": "{run}/x", "b": ["{run}/y", 3], "c": {"d": "{run}"}, "e": 1.5})
  out = fill_run_dir(c, "/r")
  assert out.a == "/r/x" and list(out.b) == ["/r/y", 3] and out.c.d == "/r" and out.e == 1.5
  assert c.a == "{run}/x"  # the input is not modified


def test_recipe_runs_stages_in_order_and_skips_finished_ones(tmp_path):
  summary = run_job(_recipe(), str(tmp_path))
  assert summary["stages"] == ["first", "second"]
  first = json.loads((tmp_path / "first" / "summary.json").read_text())
  assert first["synthetic_train"]["problems"] == 20
  assert len((tmp_path / "second" / "synthetic_train.jsonl").read_text().splitlines()) == 10
  report = (tmp_path / "report.md").read_text()
  assert report.startswith("# dsmath recipe report") and "## Provenance" in report
  assert first["job_seconds"] > 0 and report.count(f"`{first['provenance']['commit']}`") == 2  # this process, stages
  # A re-run finds both summaries and does nothing: the outputs keep their modification times.
  stamp = (tmp_path / "first" / "synthetic_train.jsonl").stat().st_mtime_ns
  run_job(_recipe(), str(tmp_path))
  assert (tmp_path / "first" / "synthetic_train.jsonl").stat().st_mtime_ns == stamp


def test_recipe_names_a_missing_stage(tmp_path):
  c = _recipe()
  c.stage_order = ["first", "nope"]
  with pytest.raises(KeyError, match="nope"):
    run_job(c, str(tmp_path))
