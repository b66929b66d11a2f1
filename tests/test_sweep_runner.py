"""The sweep runner on real jobs: subprocesses, parallel cells, resumption, kept failure logs, aggregation.

The fast test uses the table6_data job (stdlib code selection + a small sentencepiece model, a few seconds); the slow
one runs Table 6's real chain (pretrain -> pretrain with init_from -> held-out loss) for a few steps.
"""
import json
from pathlib import Path

import pytest

from dsmath.sweep import aggregate_sweep, run_sweep

SMALL_DATA = {"code_max_chars": 60_000, "tokenizer_chars_per_source": 20_000}


def _data_sweep(tmp_path):
  return {
      "name": "test", "sweep_dir": str(tmp_path / "sweep"), "parallel": 2,
      "stages": [{"name": "data", "config": "configs/table6_data.py", "module": "experiments.run",
                  "overrides": dict(SMALL_DATA)}],
      "axes": [{"name": "vocab", "levels": [{"name": "ok", "set": {}},
                                            {"name": "bad", "set": {"data/vocab_size": 10}}]},
               {"name": "seed", "values": [0, 1], "keys": ["data/code_seed"]}],
      "aggregate": {"group_by": ["vocab"], "metrics": [{"name": "code chars", "stage": "data", "path": "code_chars"}]},
  }


def test_run_resume_and_failures(tmp_path):
  cfg = _data_sweep(tmp_path)
  lines = []
  status = run_sweep(cfg, parallel=2, echo=lines.append)
  sweep = tmp_path / "sweep"
  assert sorted(status["failed"]) == ["vocab=bad__seed=0/data", "vocab=bad__seed=1/data"]
  assert status["complete_cells"] == ["vocab=ok__seed=0", "vocab=ok__seed=1"]
  bad_log = sweep / "vocab=bad__seed=0" / "data" / "log.txt"
  assert "vocab_size=10 is too small" in bad_log.read_text()  # the real error, kept and reported
  assert any("FAILED vocab=bad__seed=0/data" in line and "too small" in line for line in lines)
  # Different code_seed -> different (deterministic) stdlib selections: a non-degenerate interval.
  res = json.loads((sweep / "results.json").read_text())
  ok = res["metrics"]["code chars"]["groups"]["vocab=ok"]
  assert ok["n"] == 2 and ok["values"][0] != ok["values"][1] and ok["low"] < ok["mean"] < ok["high"]
  assert "vocab=bad" in res["groups"] and res["missing"] == ["vocab=bad__seed=0", "vocab=bad__seed=1"]
  assert "(no complete cell)" in (sweep / "results.md").read_text()
  # Provenance: the aggregating process's, and the code version both complete stages ran at (from their summaries).
  assert res["stage_commits"] == [{"commit": res["provenance"]["commit"], "dirty": res["provenance"]["dirty"],
                                   "stages": 2}]
  assert "## Provenance" in (sweep / "results.md").read_text()
  manifest = json.loads((sweep / "vocab=ok__seed=0" / "data" / "code.jsonl.manifest.json").read_text())
  assert manifest["num_files"] > 0 and all(not f.startswith("site-packages") for f, _ in manifest["files"])

  # Re-run: complete stages are cached (not re-run), failed ones are retried with their old log kept.
  ok_summary = sweep / "vocab=ok__seed=0" / "data" / "summary.json"
  mtime = ok_summary.stat().st_mtime_ns
  status2 = run_sweep(cfg, parallel=1, echo=lambda s: None)
  assert [r["status"] for r in status2["cells"]["vocab=ok__seed=0"]] == ["cached"]
  assert ok_summary.stat().st_mtime_ns == mtime
  assert (sweep / "vocab=bad__seed=0" / "data" / "log.failed-1.txt").exists()
  assert aggregate_sweep(cfg)["table_md"] == str(sweep / "results.md")


def test_nothing_complete_leaves_results_dir_alone(tmp_path):
  """A run that completes no cell (e.g. only its setup, with --only matching nothing) must not overwrite the
  committed results with an empty table."""
  cfg = {**_data_sweep(tmp_path), "results_dir": str(tmp_path / "res")}
  (tmp_path / "res").mkdir()
  (tmp_path / "res" / "results.md").write_text("the committed table\n")
  status = run_sweep(cfg, only=["no such cell"], echo=lambda s: None)
  assert status["complete_cells"] == [] and (tmp_path / "res" / "results.md").read_text() == "the committed table\n"


@pytest.mark.slow
def test_table6_chain_end_to_end(tmp_path):
  t6 = "configs/table6_code_first.py"
  tok = "{data}/tokenizer/spm.model"
  short = {"train.total_steps": 3, "train.checkpoint_every": 3, "optimizer.warmup_steps": 1, "data.batch_size": 2,
           "data.seq_len": 64}
  cfg = {
      "name": "t6-mini", "sweep_dir": str(tmp_path / "sweep"), "parallel": 1, "results_dir": str(tmp_path / "res"),
      "setup": [{"name": "data", "config": "configs/table6_data.py", "module": "experiments.run",
                 "overrides": dict(SMALL_DATA)}],
      "stages": [
          {"name": "stage1", "config": t6 + ":stage1", "overrides": {**short, "data.tokenizer.path": tok,
                                                                     "data.sources.stage1.path": "{data}/code.jsonl"}},
          {"name": "math", "config": t6 + ":math", "overrides": {**short, "init_from": "{stage1}"}},
          {"name": "eval", "config": t6 + ":eval", "module": "experiments.run",
           "overrides": {"init_from": "{math}", "sets.math_test.max_docs": 8, "sets.gsm8k_test.max_docs": 8,
                         "sets.synthetic_test.max_docs": 8, "batch_size": 4, "seq_len": 128}},
      ],
      "axes": [{"name": "seed", "values": [0], "keys": ["stage1/seed", "math/seed"]}],
      "aggregate": {"metrics": [{"name": "bpc", "stage": "eval", "path": "sets.math_test.bits_per_char"}],
                    "curves": [{"name": "loss", "stage": "math", "file": "metrics.jsonl", "key": "loss"}]},
  }
  status = run_sweep(cfg, echo=lambda s: None, command="test")
  assert not status["failed"], status
  cell = tmp_path / "sweep" / "seed=0"
  math_summary = json.loads((cell / "math" / "summary.json").read_text())
  assert math_summary["origin"].startswith("initialised from") and math_summary["step"] == 3
  assert math_summary["tokenizer"] == str(tmp_path / "sweep" / "_setup" / "data" / "tokenizer" / "spm.model")
  ev = json.loads((cell / "eval" / "summary.json").read_text())
  for name in ("math_test", "gsm8k_test", "synthetic_test"):
    s = ev["sets"][name]
    assert s["docs"] == 8 and 0 < s["bits_per_char"] < 16 and s["tokens"] > 0
  assert sorted(p.name for p in Path(tmp_path / "res").iterdir()) == [
      "command.txt", "loss.png", "results.json", "results.md", "sweep_config.json"]
  assert "## Provenance" in (tmp_path / "res" / "results.md").read_text()
