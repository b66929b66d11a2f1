"""The eval stage end to end: a finished run on disk (run.json + checkpoint) -> the JAX sampler -> grading -> reports.
The model config and the tokenizer come from the run's run.json; the eval config names neither."""
import json
import sys
from pathlib import Path

import jax
import pytest

from dsmath import model
from dsmath.data import synthetic
from dsmath.data.tokenizer import train_sentencepiece
from dsmath.eval.checkpoint_eval import default_config
from dsmath.jobs import run_job
from dsmath.runs import write_run
from dsmath.train import load_params, save_params

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from regrade import pass_at_k, regraded  # noqa: E402


def test_eval_stage_runs_a_checkpoint_through_the_sampler(tmp_path):
  problems = synthetic.make_split("train", 200, 0)
  spm = tmp_path / "run" / "tokenizer" / "spm.model"
  train_sentencepiece([p.question + "\n" + p.solution for p in problems], str(spm), vocab_size=384)
  cfg = model.ModelConfig.preset("tiny", vocab_size=384)
  params = jax.jit(lambda k: model.init_params(cfg, k))(jax.random.key(0))
  save_params(tmp_path / "run", 7, params)
  restored = load_params(tmp_path / "run", model.abstract_params(cfg))
  assert all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)))

  c = default_config()
  c.checkpoint = str(tmp_path / "run")
  c.sampling.max_new_tokens = 12
  c.sampling.strategy = {"name": "temperature", "temperature": 1.0}
  c.eval.benchmarks = ("synthetic", "gsm8k")
  c.eval.num_examples = 3
  c.eval.prompt_style = "plain"
  c.eval.k_values = (1, 2)
  c.eval.bootstrap_resamples = 50
  with pytest.raises(FileNotFoundError, match=r"is not a finished dsmath run: no run.json"):
    run_job(c, str(tmp_path / "eval"))  # checkpoints without run.json (an unfinished run or an older layout)
  write_run(tmp_path / "run", job="pretrain", model=cfg, tokenizer={"kind": "sentencepiece", "path": str(spm)},
            step=7, config={})
  summary = run_job(c, str(tmp_path / "eval"))
  assert summary["run"] == {"path": str(tmp_path / "run"), "job": "pretrain", "step": 7}
  for bench in ("synthetic", "gsm8k"):
    results, verdicts = regraded(tmp_path / "eval" / "eval" / bench / "results.json")
    rows = results["samples"]
    assert len(rows) == 3 and all(len(r["samples"]) == 2 for r in rows)
    assert all(isinstance(s["output"], str) for r in rows for s in r["samples"])
    assert [[s["correct"] for s in r["samples"]] for r in rows] == verdicts  # each written verdict, graded again
    assert summary[bench]["num_problems"] == 3
    assert summary[bench]["pass@2"] == pytest.approx(pass_at_k(verdicts, 2))
    assert summary[bench]["pass@1"] == pytest.approx(pass_at_k(verdicts, 1))
    assert summary[bench]["accuracy"] == pytest.approx(sum(v[0] for v in verdicts) / 3)
  on_disk = json.loads((tmp_path / "eval" / "summary.json").read_text())
  assert on_disk["provenance"]["packages"]["jax"] == jax.__version__ and on_disk["job_seconds"] > 0
