"""The train stage end to end, through `python -m experiments.run` in real subprocesses on the real Grain pipeline:
exact resume after SIGKILL (killed during an asynchronous save, held open there by a hold point), Ctrl-C, repeated
non-finite losses, SFT init_from.

The subprocesses share a persistent XLA compilation cache, so only the first compiles the step.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsmath.holds import hold_env, wait_held
from dsmath.paths import REPO_ROOT

N = 4  # the kill lands after step N's checkpoint; runs are 2N steps


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp("xla_cache")
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
  from dsmath.data import train_sentencepiece_from_sources
  from dsmath.data.config import load_config_file
  sources = load_config_file(str(REPO_ROOT / "configs/pretrain_toy.py")).data.sources.to_dict()
  path = tmp_path_factory.mktemp("tok") / "spm.model"
  train_sentencepiece_from_sources(sources, path, vocab_size=512, max_chars=200_000)
  return str(path)


def _args(config: str, workdir: Path, tokenizer_path: str = "", **overrides) -> list:
  flags = {"train.total_steps": 2 * N, "train.checkpoint_every": 1, "train.keep_checkpoints": 3,
           "train.progress": False, "train.peak_flops": 1e9, "train.log_every": 1, "data.seq_len": 64, "data.batch_size": 4,
           "optimizer.warmup_steps": 2, **overrides}
  if tokenizer_path:
    flags["data.tokenizer.path"] = tokenizer_path
  return [sys.executable, "-m", "experiments.run", "--config", str(REPO_ROOT / config), "--workdir", str(workdir)] + [
      f"--config.{k}={v}" for k, v in flags.items()]


def _run(args, env, expect_rc=0):
  proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == expect_rc, proc.stderr[-3000:]
  return proc


def _losses(workdir: Path) -> dict:
  from dsmath.train import read_metrics
  return {s: r["loss"] for s, r in read_metrics(workdir / "metrics.jsonl").items()}


def _committed(ckpt_dir: Path) -> list:
  return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.exists() else []


def _in_flight(ckpt_dir: Path) -> list:
  return [p.name for p in ckpt_dir.iterdir() if "tmp" in p.name] if ckpt_dir.exists() else []


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, env, tokenizer_path):
  """The reference: 2N steps without interruption."""
  workdir = tmp_path_factory.mktemp("straight")
  _run(_args("configs/pretrain_toy.py", workdir, tokenizer_path), env)
  return workdir


def test_sigkill_during_save_then_resume_is_bitwise(tmp_path, env, tokenizer_path, straight_run):
  reference = _losses(straight_run)
  assert sorted(reference) == list(range(1, 2 * N + 1))
  workdir, ckpt = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
  # The save of step N + 1 is held open (dsmath.holds: every item written, nothing committed) and killed there.
  held = tmp_path / "held.json"
  proc = subprocess.Popen(_args("configs/pretrain_toy.py", workdir, tokenizer_path), cwd=REPO_ROOT,
                          env={**env, **hold_env("checkpoint_commit", N + 1, held)}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  try:
    assert wait_held(proc, held, timeout_s=240) == {"phase": "checkpoint_commit", "step": N + 1, "pid": proc.pid}
    assert _in_flight(ckpt) and _committed(ckpt)[-1] == N  # the save of step N + 1 is in flight right now
  finally:
    proc.kill()
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert _committed(ckpt)[-1] == N and _in_flight(ckpt)  # the half-written checkpoint stays half-written
  # Resume: the half-written checkpoint is ignored, the previous one restores, and every step matches bitwise.
  proc = _run(_args("configs/pretrain_toy.py", workdir, tokenizer_path), env)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["origin"] == f"resumed from step {N}", summary
  assert summary["step"] == 2 * N and summary["status"] == "completed"
  assert not _in_flight(ckpt)
  assert _losses(workdir) == reference  # float equality of every step's float32 loss
  assert len(_committed(ckpt)) == 3  # keep_checkpoints


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path, env, tokenizer_path, straight_run):
  """Ctrl-C while the run is held just after step 2's metrics row: the loop finishes that step, saves it (no periodic
  save was due) and stops."""
  workdir, held = tmp_path / "interrupted", tmp_path / "held.json"
  proc = subprocess.Popen(_args("configs/pretrain_toy.py", workdir, tokenizer_path, **{
      "train.checkpoint_every": 100}), cwd=REPO_ROOT, env={**env, **hold_env("metrics_row", 2, held)},
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    wait_held(proc, held, timeout_s=240)
    proc.send_signal(signal.SIGINT)
    Path(f"{held}.release").touch()
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
    proc.wait()
  assert proc.returncode == 0, err[-3000:]
  summary = json.loads(out[out.index("{"):])
  assert summary["status"] == "interrupted" and summary["step"] == 2, summary
  assert _committed(workdir / "checkpoints") == [2]  # saved on Ctrl-C (no periodic save was due)
  assert not (workdir / "run.json").exists()  # unfinished: not a run later stages may start from
  reference = _losses(straight_run)
  assert _losses(workdir) == {s: reference[s] for s in (1, 2)}


def test_repeated_nonfinite_losses_stop_with_last_good_checkpoint(tmp_path, env, tokenizer_path):
  """A learning rate of 1e12 blows the params up after the first update: later losses/gradients are not finite."""
  workdir = tmp_path / "diverged"
  proc = _run(_args("configs/pretrain_toy.py", workdir, tokenizer_path, **{
      "optimizer.schedule": "constant", "optimizer.warmup_steps": 0, "optimizer.peak_lr": 1e12,
      "optimizer.grad_clip": 0.0, "train.max_consecutive_nonfinite": 2}), env, expect_rc=1)
  assert "FloatingPointError" in proc.stderr and "non-finite losses in a row" in proc.stderr
  from dsmath.train import read_metrics
  records = read_metrics(workdir / "metrics.jsonl")
  skipped = sorted(s for s, r in records.items() if r["skipped"])
  assert len(skipped) == 2 and skipped[1] == skipped[0] + 1 and max(records) == skipped[-1]
  # The latest checkpoint is the last step with a finite update, and it restores to finite params.
  committed = _committed(workdir / "checkpoints")
  assert committed[-1] == skipped[0] - 1
  import jax
  from dsmath import model
  from dsmath.train import load_params
  params = load_params(workdir, model.abstract_params(model.ModelConfig.preset("tiny")))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_nan_learning_rate_is_rejected_before_anything_is_trained_or_saved(tmp_path, env, tokenizer_path):
  """optimizer.peak_lr = nan used to pass the loss/gradient check: the first update wrote NaN params, which were
  checkpointed and resumed from. Now the run fails up front, naming the key, and leaves no checkpoint."""
  workdir = tmp_path / "nan_lr"
  proc = _run(_args("configs/pretrain_toy.py", workdir, tokenizer_path, **{"optimizer.peak_lr": "nan"}), env,
              expect_rc=1)
  assert "optimizer.peak_lr" in proc.stderr and "nan" in proc.stderr
  assert _committed(workdir / "checkpoints") == []


class _Batches:
  """Random packed token batches, with the iterator-state interface the loop saves."""

  def __init__(self, vocab: int, b: int = 4, t: int = 16):
    self._rng, self._vocab, self._b, self._t, self._n = np.random.default_rng(0), vocab, b, t, 0

  def __next__(self):
    self._n += 1
    x = self._rng.integers(0, self._vocab, (self._b, self._t + 1)).astype(np.int32)
    return {"inputs": x[:, :-1], "targets": x[:, 1:], "segment_ids": np.ones((self._b, self._t), np.int32),
            "positions": np.tile(np.arange(self._t, dtype=np.int32), (self._b, 1)),
            "loss_mask": np.ones((self._b, self._t), np.float32)}

  def get_state(self):
    return {"n": self._n}


def test_train_loop_with_a_nan_producing_optimizer_never_checkpoints_nonfinite_params(tmp_path):
  """An optimizer whose update is NaN although loss and gradient are finite (here built around make_optimizer's
  check): every step is skipped, and the checkpoints the loop writes (the final one) hold the initial params."""
  import jax
  import optax
  from etils import epath
  from dsmath import model
  from dsmath.train import (Checkpointer, load_params, make_train_step, new_state, next_token_loss, resolve_config,
                            train_loop)
  cfg = resolve_config({"job": "pretrain", "train": {"total_steps": 2, "checkpoint_every": 1, "progress": False,
                                                     "peak_flops": 1e9, "max_consecutive_nonfinite": 3}})
  model_cfg = model.ModelConfig.preset("tiny", num_layers=1)
  opt = optax.adamw(float("nan"))
  step = make_train_step(model_cfg, opt, next_token_loss(model_cfg))
  state = new_state(step, model_cfg, opt, seed=0)
  initial = jax.tree.map(np.asarray, state["params"])
  summary = train_loop(cfg, epath.Path(tmp_path), model_cfg=model_cfg, train_step=step, state=state,
                       iterator=_Batches(model_cfg.vocab_size), checkpointer=Checkpointer(tmp_path / "checkpoints"),
                       schedule=lambda s: 0.0, batch_size=4, seq_len=16)
  assert summary["num_skipped"] == 2 and summary["nonfinite_steps"] == [1, 2] and np.isfinite(summary["first_loss"])
  assert _committed(tmp_path / "checkpoints") == [2]  # no periodic save after a skipped step; the final one
  restored = load_params(tmp_path, model.abstract_params(model_cfg))
  for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_sft_initialises_from_the_pretraining_run(tmp_path, env, tokenizer_path, straight_run):
  """SFT with init_from: takes the params, the model config and the tokenizer of the pre-training run (its
  run.json). With a warm-up the first step's lr is 0, so the SFT checkpoint after one step holds exactly the
  pre-trained params."""
  from dsmath.runs import load_run
  workdir = tmp_path / "sft"
  _run(_args("configs/sft_stage_toy.py", workdir, **{"init_from": str(straight_run), "train.total_steps": 1}), env)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["origin"] == f"initialised from {straight_run}" and summary["status"] == "completed"
  assert summary["tokenizer"] == tokenizer_path  # from the pre-training run's run.json
  parent, child = load_run(straight_run), load_run(workdir)
  assert (parent.job, parent.step, parent.tokenizer["path"]) == ("pretrain", 2 * N, tokenizer_path)
  assert (child.job, child.step, child.parents, child.model) == ("sft", 1, (str(straight_run),), parent.model)
  assert child.config["init_from"] == str(straight_run) and child.provenance["commit"]
  import jax
  for a, b in zip(jax.tree.leaves(parent.load_params()), jax.tree.leaves(child.load_params())):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.isfinite(summary["final_loss"])
