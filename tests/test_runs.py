"""The run artifact and the config convention across stages.

Every stage starts from every kind of run it accepts, through run.json / `load_run` (SFT from pre-training; eval and
held-out loss from a pre-training, an SFT and an RL run; HF export from a run and HF import back); every stage's
config rejects a wrong-typed value and an unknown nested key, naming the full key path; a directory of an older
layout (checkpoints without run.json, an old run.json) gets load_run's clear error.

The runs are tiny (two steps of the "tiny" model, one RL step), made in-process once for the module; every run has
the same model shapes, so the eval and loss programs compile once.
"""
import copy
import json
import math
import re
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from configs import grpo_toy
from dsmath import jobs
from dsmath.config import ConfigError, to_dict
from dsmath.data import synthetic, train_sentencepiece
from dsmath.files import write_json_atomic, write_jsonl_atomic
from dsmath.runs import RUN_FILE, load_run
from dsmath.sweep import run_sweep
from dsmath.train.plan import resolve_plan_config

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from regrade import regraded  # noqa: E402

TRAIN = {"total_steps": 2, "checkpoint_every": 2, "peak_flops": 1e9, "progress": False, "async_checkpoint": False}


def _run(config: dict, workdir) -> dict:
  return jobs.run_job(ml_collections.ConfigDict(config), str(workdir))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Synthetic-task texts as a JSONL source and a 384-piece sentencepiece model trained on them."""
  d = tmp_path_factory.mktemp("data")
  texts = [p.prompt + p.solution for p in synthetic.make_split("train", 300, 0)]
  write_jsonl_atomic(d / "train.jsonl", ({"text": t} for t in texts))
  train_sentencepiece(texts, d / "spm.model", vocab_size=384)
  return d


@pytest.fixture(scope="module")
def pretrain_run(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pretrain")
  _run({"job": "pretrain", "data": {"sources": {"syn": {"path": str(data / "train.jsonl")}}, "seq_len": 32,
                                    "batch_size": 2, "tokenizer": {"path": str(data / "spm.model")}},
        "optimizer": {"warmup_steps": 1, "peak_lr": 1e-3}, "train": TRAIN}, workdir)
  return workdir


@pytest.fixture(scope="module")
def sft_run(pretrain_run, tmp_path_factory):
  """The train job's SFT from the pre-training run: no model, no tokenizer in its config."""
  workdir = tmp_path_factory.mktemp("sft")
  _run({"job": "sft", "init_from": str(pretrain_run), "train": TRAIN, "optimizer": {"warmup_steps": 0},
        "data": {"sources": {"gsm8k": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k_cot"}},
                 "seq_len": 64, "batch_size": 2}}, workdir)
  return workdir


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
  """configs/grpo_toy.py shrunk to one GRPO step after two warm-up steps of the paradigm's SFT."""
  workdir = tmp_path_factory.mktemp("rl")
  c = grpo_toy.get_config()
  c.rl.steps, c.rl.sft_warmup_steps, c.rl.sft_batch = 1, 2, 4
  c.rollout.prompts_per_step, c.rollout.group_size, c.rollout.max_new_tokens = 2, 2, 8
  c.task.synthetic.num_train, c.task.synthetic.num_test = 64, 16
  c.eval.num_questions = 0
  c.checkpoint.async_save = False
  jobs.run_job(c, str(workdir))
  return workdir


def test_sft_starts_from_the_pretraining_run(pretrain_run, sft_run, data):
  parent, child = load_run(pretrain_run), load_run(sft_run)
  assert (parent.job, parent.step, parent.parents) == ("pretrain", 2, ())
  assert parent.tokenizer == {"path": str(data / "spm.model")}
  assert (child.job, child.step, child.parents) == ("sft", 2, (str(pretrain_run),))
  assert child.model == parent.model and child.tokenizer == parent.tokenizer
  summary = json.loads((sft_run / "summary.json").read_text())
  assert summary["origin"] == f"initialised from {pretrain_run}" and np.isfinite(summary["final_loss"])
  assert summary["provenance"] == child.provenance and summary["provenance"]["machine"]["backend"] == "cpu"
  # The config a run records is its resolved config: every key, concrete values.
  assert child.config["init_from"] == str(pretrain_run) and child.config["model"] == to_dict(parent.model)
  assert child.config["data"]["sources"]["gsm8k"]["weight"] == 1.0


@pytest.mark.parametrize("parent, job", [("pretrain_run", "pretrain"), ("sft_run", "sft"), ("rl_run", "rl")])
def test_eval_starts_from_each_kind_of_run(parent, job, request, tmp_path):
  run_dir = request.getfixturevalue(parent)
  c = {"job": "eval", "checkpoint": str(run_dir / "checkpoints"),  # the checkpoints/ directory finds its run too
       "sampling": {"max_new_tokens": 6},
       "eval": {"benchmarks": ["synthetic"], "num_examples": 2, "prompt_style": "plain", "bootstrap_resamples": 10,
                "grader_workers": 1, "benchmark_options": {"synthetic": {"num_examples": 2}}}}
  summary = _run(c, tmp_path)
  run = load_run(run_dir)
  assert summary["run"] == {"path": str(run_dir), "job": job, "step": run.step}
  results, verdicts = regraded(tmp_path / "eval" / "synthetic" / "results.json")
  assert [[s["correct"] for s in r["samples"]] for r in results["samples"]] == verdicts  # graded again
  assert summary["synthetic"]["num_problems"] == 2
  assert summary["synthetic"]["accuracy"] == pytest.approx(sum(v[0] for v in verdicts) / 2)
  assert summary["provenance"]["commit"]


@pytest.mark.parametrize("parent", ["pretrain_run", "sft_run", "rl_run"])
def test_heldout_loss_starts_from_each_kind_of_run(parent, request, tmp_path):
  run_dir = request.getfixturevalue(parent)
  step_dir = run_dir / "checkpoints" / str(load_run(run_dir).step)  # one step directory names its run too
  summary = _run({"job": "heldout_loss", "init_from": str(step_dir), "seq_len": 32, "batch_size": 4,
                  "sets": {"syn": {"kind": "synthetic", "max_docs": 3}}}, tmp_path)
  assert summary["run"] == str(run_dir) and summary["checkpoint_step"] == load_run(run_dir).step
  s = summary["sets"]["syn"]
  assert s["docs"] == 3 and s["tokens"] > 0 and math.isfinite(s["nats_per_token"]) and s["bits_per_char"] > 0


def test_hf_export_of_a_run_imports_back_as_an_equal_run(pretrain_run, tmp_path):
  """hf_export takes the model config and tokenizer from run.json; hf_import makes a run (step 0, run.json) that
  later stages start from: the same params, model config and held-out loss as the original."""
  exported = _run({"job": "hf_export", "run": str(pretrain_run)}, tmp_path / "hf")
  hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
  original = load_run(pretrain_run)
  assert hf_config["vocab_size"] == original.model.vocab_size and exported["step"] == original.step
  _run({"job": "hf_import", "hf_path": str(tmp_path / "hf"), "tokenizer": {"path": exported["tokenizer"]}},
       tmp_path / "imported")
  imported = load_run(tmp_path / "imported")
  assert (imported.job, imported.step, imported.model) == ("hf_import", 0, original.model)
  for a, b in zip(jax.tree.leaves(original.load_params()), jax.tree.leaves(imported.load_params())):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  loss = [_run({"job": "heldout_loss", "init_from": str(run), "seq_len": 32, "batch_size": 4,
                "sets": {"syn": {"kind": "synthetic", "max_docs": 3}}}, tmp_path / f"loss{i}")["sets"]["syn"]
          for i, run in enumerate((pretrain_run, tmp_path / "imported"))]
  assert loss[0] == loss[1]


def test_an_older_layout_gets_a_clear_error(pretrain_run, tmp_path):
  """Checkpoints without run.json (a run made before run.json, or an unfinished one), an older run.json format,
  and a run.json missing fields each fail naming the file and what is missing, also through a stage."""
  old = tmp_path / "old"
  (old / "checkpoints" / "2").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=re.escape(f"{old} is not a finished dsmath run: no run.json in it")):
    load_run(old)
  with pytest.raises(FileNotFoundError, match="is not a finished dsmath run"):
    _run({"job": "sft", "init_from": str(old)}, tmp_path / "sft")
  record = json.loads((pretrain_run / RUN_FILE).read_text())
  write_json_atomic(old / RUN_FILE, {**record, "format": 0})
  with pytest.raises(ValueError, match=r"run.json has format 0, this dsmath reads format 1: re-run the stage"):
    load_run(old / "checkpoints" / "2")
  write_json_atomic(old / RUN_FILE, {k: v for k, v in record.items() if k not in ("model", "tokenizer")})
  with pytest.raises(ValueError, match=r"run.json lacks \['model', 'tokenizer'\]"):
    _run({"job": "heldout_loss", "init_from": str(old), "sets": {"syn": {"kind": "synthetic", "max_docs": 1}}},
         tmp_path / "loss")


def test_a_stage_starting_from_a_run_does_not_repeat_its_model_or_tokenizer(pretrain_run, tmp_path):
  with pytest.raises(ConfigError, match=r"config.model is set, but the model comes from config.init_from"):
    _run({"job": "sft", "init_from": str(pretrain_run), "model": {"preset": "tiny", "num_layers": 1}}, tmp_path)
  with pytest.raises(ConfigError, match=r"config.data.tokenizer is set, but the tokenizer comes from"):
    _run({"job": "sft", "init_from": str(pretrain_run), "data": {"tokenizer": {"path": "x.model"}}}, tmp_path)


def _set(config, dotted: str, value):
  """config with `dotted` (a.b.0.c) set to value, creating mappings on the way."""
  config = copy.deepcopy(config)
  *parents, last = dotted.split(".")
  node = config
  for key in parents:
    node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
  node[int(last) if isinstance(node, list) else last] = value
  return config


def _stage(job):
  return lambda config, workdir: jobs.resolve(job)(config, str(workdir))


_SWEEP = {"stages": [{"name": "a", "config": "configs/table6_data.py"}],
          "aggregate": {"metrics": [{"name": "m", "stage": "a", "path": "x"}]}}
# stage entry point, a config it would accept, (key, wrong-typed value, the error), an unknown nested key
STAGES = {
    "pretrain": (_stage("pretrain"), {"job": "pretrain"},
                 ("model.num_layers", "2", "config.model.num_layers must be int, got str '2'"), "data.tokenizer.bogus"),
    "sft": (_stage("sft"), {"job": "sft", "data": {"sources": {"x": {"path": "x.jsonl"}}}},
            ("data.sources.x.weight", "high", "config.data.sources.x.weight must be float, got str 'high'"),
            "data.sources.x.bogus"),
    "rl": (_stage("rl"), {"job": "rl"},
           ("rollout.group_size", "4", "config.rollout.group_size must be int, got str '4'"),
           "task.synthetic.difficulty.bogus"),
    "eval": (_stage("eval"), {"job": "eval"},
             ("sampling.max_new_tokens", "8", "config.sampling.max_new_tokens must be int, got str '8'"), "eval.bogus"),
    "heldout_loss": (_stage("heldout_loss"), {"job": "heldout_loss", "sets": {"x": {"kind": "synthetic"}}},
                     ("sets.x.max_docs", "3", "config.sets.x.max_docs must be int, got str '3'"), "sets.x.bogus"),
    "table6_data": (_stage("table6_data"), {"job": "table6_data"},
                    ("tokenizer_sources.general.weight", "high",
                     "config.tokenizer_sources.general.weight must be float, got str 'high'"),
                    "tokenizer_sources.general.bogus"),
    "sources": (_stage("sources"), {"job": "sources"},
                ("synthetic.difficulty.max_steps", "3", "config.synthetic.difficulty.max_steps must be int, got str"),
                "synthetic.difficulty.bogus"),
    "corpus": (_stage("corpus"), {"job": "corpus"},
               ("classifier.epoch", "3", "config.classifier.epoch must be int, got str '3'"), "decontam.bogus"),
    "recipe": (_stage("recipe"), {"job": "recipe"},
               ("report.accuracy", [[1, "eval"]], "config.report.accuracy[0][0] must be str, got int 1"),
               "report.bogus"),
    "hf_import": (_stage("hf_import"), {"job": "hf_import"},
                  ("tokenizer.kind", 3, "config.tokenizer.kind must be one of ['', 'sentencepiece', 'hf'], got 3"),
                  "tokenizer.bogus"),
    "hf_export": (_stage("hf_export"), {"job": "hf_export"},
                  ("max_shard_size", 5, "config.max_shard_size must be str, got int 5"), "bogus"),
    "plan": (lambda config, workdir: resolve_plan_config(config), {"job": "plan"},
             ("model.num_layers", "2", "config.model.num_layers must be int, got str '2'"), "plan.bogus"),
    "sweep": (lambda config, workdir: run_sweep(config, workdir), _SWEEP,
              ("stages.0.enabled", "yes", "config.stages[0].enabled must be bool, got str 'yes'"),
              "aggregate.metrics.0.bogus"),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_names_the_path_of_a_wrong_typed_value_and_of_an_unknown_nested_key(stage, tmp_path):
  entry, base, (key, value, message), unknown = STAGES[stage]
  with pytest.raises(ConfigError) as wrong:
    entry(_set(base, key, value), tmp_path)
  assert message in str(wrong.value)
  with pytest.raises(ConfigError) as extra:
    entry(_set(base, unknown, 1), tmp_path)
  path = "config." + unknown.replace(".0.", "[0].")
  assert f"unknown key(s) ['{path}']" in str(extra.value)
  assert not any(tmp_path.iterdir())  # rejected before the stage wrote anything
