"""The whole recipe fast (configs/toy.py with tiny step counts), without network: the corpus stage's mining rounds
(Beam with worker processes), the sources stage, pre-training, SFT, GRPO with held-out evaluation, the evaluation and
Pass@K stages and the report, each checked by what it wrote. A guard refuses every connection leaving the machine in
this process and in every process it starts (tests/helpers/netguard), and is shown to fire in both."""
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import apache_beam as beam
import pytest

from dsmath.corpus import beam_pipeline
from dsmath.jobs import run_job
from dsmath.paths import REPO_ROOT

GUARD_DIR = Path(__file__).parent / "helpers" / "netguard"
BEAM_WORKERS = {"direct_running_mode": "multi_processing", "direct_num_workers": 1}  # a worker process
OUTSIDE = ("198.51.100.7", 80)  # TEST-NET-2: an address outside this machine


@pytest.fixture
def no_network(tmp_path, monkeypatch) -> Path:
  """The guard on, here and in every Python process started from here; returns the log of refused attempts."""
  spec = importlib.util.spec_from_file_location("dsmath_netguard", GUARD_DIR / "sitecustomize.py")
  guard = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(guard)
  guard.install()
  log = tmp_path / "refused.log"
  monkeypatch.setenv("DSMATH_NETGUARD", "1")
  monkeypatch.setenv("DSMATH_NETGUARD_LOG", str(log))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD_DIR)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  return log


def test_the_guard_fires_here_and_in_beam_workers(no_network, tmp_path):
  with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="blocked by the test's guard"):
    sock.connect(OUTSIDE)
  with pytest.raises(ConnectionRefusedError, match="blocked by the test's guard"):
    socket.getaddrinfo("example.com", 80)
  socket.getaddrinfo("localhost", 80)  # loopback stays open
  def connect(_):  # defined here: Beam's workers get it by value, not by this test module's name
    with socket.socket() as sock:
      sock.settimeout(5)
      try:
        sock.connect(OUTSIDE)
        return json.dumps([os.getpid(), "connected"])
      except OSError as e:
        return json.dumps([os.getpid(), str(e)])
  out = tmp_path / "out"
  with beam.Pipeline(options=beam_pipeline.pipeline_options(options=BEAM_WORKERS)) as p:
    p | beam.Create([0]) | beam.Map(connect) | beam.io.WriteToText(str(out), shard_name_template="")
  (pid, message), = [json.loads(line) for line in out.read_text().splitlines()]
  assert pid != os.getpid() and "blocked by the test's guard" in message  # in a Beam worker process
  refused = [line.split()[:2] for line in no_network.read_text().splitlines()]
  assert refused == [[str(os.getpid()), "socket.connect"], [str(os.getpid()), "socket.getaddrinfo"],
                     [str(pid), "socket.connect"]]


def _fast_recipe():
  sys.path.insert(0, str(REPO_ROOT))
  from configs import toy
  c = toy.get_config()
  s = c.stages
  s.corpus.toy.update({"num_seed": 150, "num_negatives": 150, "mathqa_math": 60, "wordproblems_math": 60,
                       "tutorhub_math": 10, "warc_pages": 5})
  s.corpus.classifier.update({"num_positives": 200, "num_negatives": 200, "epoch": 5, "dim": 16, "bucket": 50_000})
  s.corpus.selection.budget = 100
  s.corpus.iteration.max_rounds = 2  # the loop runs twice (round 2 overlaps round 1 by less than 98%)
  s.corpus.beam.options = BEAM_WORKERS
  s.sources.synthetic.num_train, s.sources.synthetic.num_sft, s.sources.code.max_chars = 200, 200, 20_000
  s.pretrain.model = {"preset": "tiny", "num_layers": 2}
  s.pretrain.tokenizer_training.max_chars = 200_000
  s.pretrain.train.total_steps, s.pretrain.data.batch_size, s.pretrain.data.seq_len = 4, 4, 64
  s.sft.train.total_steps, s.sft.train.checkpoint_every, s.sft.data.batch_size = 4, 2, 4
  s.grpo.rl.steps, s.grpo.eval.every, s.grpo.checkpoint.every = 2, 0, 1  # held-out accuracy before and after
  s.grpo.rollout.prompts_per_step, s.grpo.rollout.group_size, s.grpo.rollout.max_new_tokens = 2, 4, 16
  s.grpo.eval.num_questions, s.grpo.eval.samples, s.grpo.task.synthetic.num_test = 4, 2, 8
  for name in ("eval_pretrain", "eval_sft", "eval_grpo", "passk_sft", "passk_grpo"):
    s[name].eval.num_examples = s[name].eval.benchmark_options.synthetic.num_examples = 4
    s[name].sampling.max_new_tokens = 16
  for name in ("passk_sft", "passk_grpo"):
    s[name].eval.k_values = (1, 2)
  return c


def _jsonl(path: Path) -> list:
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_fast_recipe_writes_every_stage_and_the_report_without_network(no_network, tmp_path):
  c = _fast_recipe()
  run = tmp_path / "run"
  summary = run_job(c, str(run))
  assert summary["stages"] == list(c.stage_order)
  assert not no_network.exists()  # nothing tried to reach the network, here or in any process started from here

  # corpus: two mining rounds, each with its statistics; the shards hold what the manifest counts
  corpus = json.loads((run / "corpus" / "summary.json").read_text())
  rounds = corpus["rounds"]
  assert [r["round"] for r in rounds] == [1, 2] and corpus["stop_reason"] == "max_rounds"
  assert rounds[0]["overlap_with_previous"] is None and 0 < rounds[1]["overlap_with_previous"] < 0.98
  for r in rounds:
    stats = json.loads((run / "corpus" / f"round_{r['round']}" / "stats.json").read_text())
    scores = [s for f in sorted((run / "corpus" / f"round_{r['round']}").glob("scores-*.jsonl")) for s in _jsonl(f)]
    assert stats["pages_collected"] == r["pages_collected"] == sum(s["selected"] for s in scores) == 100
  assert rounds[1]["classifier"]["num_positives"] > rounds[0]["classifier"]["num_positives"]  # new positives added
  docs = [d for f in sorted((run / "corpus" / "corpus").glob("corpus-*.jsonl")) for d in _jsonl(f)]
  manifest = json.loads((run / "corpus" / "corpus" / "manifest.json").read_text())
  assert manifest["documents"] == len(docs) == sum(s["records"] for s in manifest["array_record_shards"]) > 0
  assert (run / "corpus" / "report.md").read_text().count("\n| 2 |") == 1

  # sources: the files hold what the summary says
  sources = json.loads((run / "sources" / "summary.json").read_text())
  sft_rows = _jsonl(run / "sources" / "synthetic_sft.jsonl")
  assert len(_jsonl(run / "sources" / "synthetic_train.jsonl")) == sources["synthetic_train"]["problems"] == 200
  assert len(sft_rows) == sources["synthetic_sft"]["problems"] == 200
  assert sources["synthetic_sft"]["teacher_answers_right"] == sum(r["teacher_answer"] == r["answer"]
                                                                  for r in sft_rows) / 200
  chars = [len(r["text"]) for r in _jsonl(run / "sources" / "code.jsonl")]  # files until 20,000 characters
  assert sum(chars) == sources["code"]["chars"] and sum(chars[:-1]) < 20_000 <= sum(chars)

  # training stages: each a finished run starting from the one before
  runs = {n: json.loads((run / n / "run.json").read_text()) for n in ("pretrain", "sft", "grpo")}
  assert [runs[n]["step"] for n in runs] == [4, 4, 2]
  assert runs["sft"]["parents"] == [str(run / "pretrain")] and runs["grpo"]["parents"] == [str(run / "sft")]
  rl_rows = _jsonl(run / "grpo" / "metrics.jsonl")
  assert [r["step"] for r in rl_rows if r.get("evaluation")] == [0, 2]
  assert [r["step"] for r in rl_rows if "reward_mean" in r] == [1, 2]

  # the report: every stage's section, numbers as the stages wrote them, the plots beside it
  report = (run / "report.md").read_text()
  for name in c.stage_order:
    assert f"| {name} | {c.stages[name].job} |" in report
  assert "## Corpus mining (corpus)" in report and "\n| 2 | 100 | " in report
  for label, stage in (("pre-training", "eval_pretrain"), ("SFT", "eval_sft"), ("GRPO", "eval_grpo")):
    s = json.loads((run / stage / "summary.json").read_text())["synthetic"]
    assert f"| {label} | synthetic | {s['accuracy']:.3f} |" in report and s["num_problems"] == 4
  grpo = json.loads((run / "grpo" / "summary.json").read_text())
  assert f"| greedy | {grpo['test_accuracy_greedy_before']:.3f} | {grpo['test_accuracy_greedy_after']:.3f} |" in report
  passk = json.loads((run / "passk_grpo" / "summary.json").read_text())["synthetic"]
  assert f"| GRPO | {passk['pass@1']:.3f} | {passk['pass@2']:.3f} | {passk['maj@1']:.3f} |" in report
  for section in ("## Stages", "## Training curves", "## RL stage `grpo`", "## Held-out accuracy after each stage",
                  "## Pass@K and Maj@K", "## Provenance"):
    assert section in report, section
  for png in ("curve_loss.png", "curve_reward_mean.png", "rl_grpo.png", "pass_maj_synthetic.png"):
    assert f"]({png})" in report and (run / png).stat().st_size > 1000, png
