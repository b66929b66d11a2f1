"""The eval stage end to end: a checkpoint on disk -> the JAX sampler -> grading -> reports."""
import json

import jax
import ml_collections

from dsmath import model
from dsmath.data import synthetic
from dsmath.data.tokenizer import train_sentencepiece
from dsmath.eval.checkpoint_eval import default_config
from dsmath.jobs import run_job
from dsmath.train import load_params, save_params


def test_eval_stage_runs_a_checkpoint_through_the_sampler(tmp_path):
  problems = synthetic.make_split("train", 200, 0)
  spm = tmp_path / "run" / "tokenizer" / "spm.model"
  spm.parent.mkdir(parents=True)
  train_sentencepiece([p.question + "\n" + p.solution for p in problems], str(spm), vocab_size=384)
  (tmp_path / "run" / "tokenizer_ref.json").write_text(json.dumps({"path": str(spm)}))
  cfg = model.ModelConfig.preset("tiny", vocab_size=384)
  params = jax.jit(lambda k: model.init_params(cfg, k))(jax.random.key(0))
  save_params(tmp_path / "run", 7, params)
  restored = load_params(tmp_path / "run", model.abstract_params(cfg))
  assert all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)))

  c = default_config()
  c.checkpoint = str(tmp_path / "run")
  c.model = ml_collections.ConfigDict({"preset": "tiny", "vocab_size": 384})
  c.sampling.max_new_tokens = 12
  c.sampling.strategy = {"name": "temperature", "temperature": 1.0}
  c.eval.benchmarks = ["synthetic", "gsm8k"]
  c.eval.num_examples = 3
  c.eval.prompt_style = "plain"
  c.eval.k_values = [1, 2]
  c.eval.bootstrap_resamples = 50
  summary = run_job(c, str(tmp_path / "eval"))
  for bench in ("synthetic", "gsm8k"):
    results = json.loads((tmp_path / "eval" / "eval" / bench / "results.json").read_text())
    rows = results["samples"]
    assert len(rows) == 3 and all(len(r["samples"]) == 2 for r in rows)
    assert all(isinstance(s["output"], str) for r in rows for s in r["samples"])
    assert summary[bench]["num_problems"] == 3
    assert 0.0 <= summary[bench]["pass@2"] <= 1.0
