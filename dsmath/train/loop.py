"""The train loop shared by pre-training and SFT, and the stage entry point `run(config, workdir) -> dict`.

Run directory:
  <workdir>/checkpoints/<step>/   orbax checkpoints (dsmath.train.checkpoint), the last train.keep_checkpoints kept
  <workdir>/metrics.jsonl         one record per logged step: loss, lr, grad_norm, tokens_per_s, mfu, ...
  <workdir>/tb/                   the same scalars as TensorBoard events
  <workdir>/tokenizer/spm.model   the sentencepiece model, when trained on the fly
  <workdir>/run.json              written once the run completes (dsmath.runs): model config, tokenizer, final step,
                                  resolved config, parent run; what init_from, eval, RL and HF export read
Re-running the same command resumes from the latest checkpoint (exactly: same losses bitwise on CPU). Ctrl-C
(SIGINT) finishes the current step, saves a checkpoint and returns with status "interrupted". NaN/inf losses skip
their update; train.max_consecutive_nonfinite of them in a row raise FloatingPointError, leaving the checkpoints
as they were.
"""
from __future__ import annotations

import logging
import os
import signal
import statistics
import threading
import time
from typing import Any, Callable, Optional

import jax
from etils import epath

from dsmath import data as data_lib
from dsmath.config import ConfigError
from dsmath.data.config import TokenizerConfig
from dsmath.model import ModelConfig
from dsmath.model import sharding as msharding
from dsmath.runs import Run, load_run, write_run
from dsmath.train import distributed
from dsmath.train.checkpoint import Checkpointer
from dsmath.train.config import TrainStageConfig, resolve_config
from dsmath.train.loss import next_token_loss
from dsmath.train.metrics import MetricWriter, flops_per_step, measure_peak_flops, mfu
from dsmath.train.optimizer import make_optimizer
from dsmath.train.step import TrainStep, abstract_state, make_train_step, new_state

log = logging.getLogger(__name__)

# config.job -> the data engineer's iterator factory (data_config, tokenizer, *, process_index, process_count).
ITERATORS: dict[str, Callable[..., Any]] = {
    "pretrain": data_lib.make_pretrain_iterator,
    "sft": data_lib.make_sft_iterator,
}

TOKENIZER_FILE = "tokenizer/spm.model"


def _parent_run(cfg: TrainStageConfig) -> Optional[Run]:
  """init_from's finished run; its run.json gives the model and the tokenizer, which the config must not repeat."""
  if not cfg.init_from:
    return None
  default = TrainStageConfig()
  if cfg.model != default.model:
    raise ConfigError(f"config.model is set, but the model comes from config.init_from={cfg.init_from!r} (its "
                      f"run.json); leave config.model at its default")
  if cfg.data.tokenizer != default.data.tokenizer:
    raise ConfigError(f"config.data.tokenizer is set, but the tokenizer comes from config.init_from="
                      f"{cfg.init_from!r} (its run.json); leave config.data.tokenizer empty")
  return load_run(cfg.init_from)


def prepare_tokenizer(cfg: TrainStageConfig, model_cfg: ModelConfig, workdir: epath.Path, parent: Optional[Run]):
  """(tokenizer, its {kind, path, ...} record for run.json) of this run.

  In order: init_from's run (SFT keeps its base model's vocabulary); data.tokenizer (if its path is set); else
  (pre-training) the sentencepiece model <workdir>/tokenizer/spm.model, trained now on data.sources unless this run
  trained it before it was interrupted (the file is written atomically: it exists only whole).
  """
  if parent is not None:
    ref = dict(parent.tokenizer)
    log.info("tokenizer: %s (from init_from %s)", ref["path"], parent.path)
  elif cfg.data.tokenizer.path:
    ref = cfg.data.tokenizer.as_ref()
  elif cfg.job != "pretrain":
    raise ConfigError("config.data.tokenizer.path and config.init_from are both empty: SFT uses its base run's "
                      "tokenizer (init_from) or the one data.tokenizer names")
  else:
    own = workdir / TOKENIZER_FILE
    if not own.exists():
      vocab = cfg.tokenizer_training.vocab_size or model_cfg.vocab_size
      log.info("tokenizer: training a %d-piece sentencepiece model on config.data.sources -> %s", vocab, own)
      data_lib.train_sentencepiece_from_sources(cfg.data.sources, str(own), vocab_size=vocab,
                                                max_chars=cfg.tokenizer_training.max_chars)
    ref = TokenizerConfig(kind="sentencepiece", path=str(own)).as_ref()
  return data_lib.load_tokenizer(ref), ref


class _QuietOrbax(logging.Filter):
  """Drops orbax's per-save INFO lines (dozens per checkpoint) so the progress bar stays readable."""

  def filter(self, record):
    return record.levelno > logging.INFO or "orbax" not in record.pathname


_QUIET_ORBAX = _QuietOrbax()


class Interrupt:
  """SIGINT -> a flag the loop checks after each step (a second Ctrl-C interrupts at once)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log.warning("Ctrl-C: finishing this step, saving a checkpoint, then stopping (Ctrl-C again to abort)")

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)


def progress_bar(total: int, initial: int, enabled: bool, desc: str | None = None):
  """A tqdm bar of steps on process 0; quiet when disabled or under CI (the CI environment variable set)."""
  from tqdm import tqdm
  quiet = not enabled or jax.process_index() != 0 or bool(os.environ.get("CI"))
  return tqdm(total=total, initial=initial, disable=quiet, unit="step", dynamic_ncols=True, desc=desc)


def train_loop(cfg, workdir, *, model_cfg: ModelConfig, train_step: TrainStep, state: dict, iterator,
               checkpointer: Checkpointer, schedule, batch_size: int, seq_len: int) -> dict:
  """Steps `state` from its step to cfg.train.total_steps on batches of `iterator`; returns the run summary."""
  tc = cfg.train
  total = tc.total_steps
  step = int(jax.device_get(state["step"]))
  start_step = step
  skipped_total = int(jax.device_get(state["num_skipped"]))
  writer = MetricWriter(workdir)
  peak = tc.peak_flops or measure_peak_flops()
  step_flops = flops_per_step(model_cfg, batch_size, seq_len)
  num_devices = train_step.mesh.devices.size
  consecutive, nonfinite_steps, times, losses = 0, [], [], {}
  status = "completed"
  last_saved = step if checkpointer.latest_step() == step else None
  bar = progress_bar(total, step, tc.progress)
  try:
    with Interrupt() as interrupt:
      t_prev = time.perf_counter()
      while step < total:
        batch = next(iterator)
        lr = float(schedule(step - skipped_total))  # the schedule counts applied updates
        state, metrics = train_step(state, train_step.shard_batch(batch))
        step += 1
        m = jax.device_get(metrics)
        skipped = bool(m["skipped"])
        # No periodic save right after a skipped (non-finite) update: the last good checkpoint stays the latest.
        if (step % tc.checkpoint_every == 0 and not skipped) or step == total:
          checkpointer.save(step, state, iterator.get_state())
          last_saved = step
        now = time.perf_counter()
        dt, t_prev = now - t_prev, now
        if step > start_step + 1:  # the first step compiles
          times.append(dt)
        loss = float(m["loss"])
        losses[step] = loss
        scalars = {"loss": loss, "learning_rate": lr, "grad_norm": float(m["grad_norm"]),
                   "tokens_per_s": batch_size * seq_len / dt, "mfu": mfu(step_flops, dt, peak, num_devices),
                   "step_time_s": dt, "loss_tokens": float(m["loss_weight"]), "skipped": float(skipped),
                   **{k: float(v) for k, v in m.items() if k not in ("loss", "grad_norm", "skipped", "loss_weight")},
                   **{f"data/{k}": v for k, v in data_lib.batch_stats(batch).items()}}
        if skipped:
          skipped_total += 1
          consecutive += 1
          nonfinite_steps.append(step)
          log.warning("step %d: non-finite loss %s / grad norm %s: update skipped (%d in a row, stop at %d)", step,
                      loss, float(m["grad_norm"]), consecutive, tc.max_consecutive_nonfinite)
        else:
          consecutive = 0
        if step % tc.log_every == 0 or skipped or step == total:
          writer.write(step, scalars)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if consecutive >= tc.max_consecutive_nonfinite:
          status = "stopped_nonfinite"
          break
        if interrupt.requested:
          if last_saved != step:
            checkpointer.save(step, state, iterator.get_state())
            last_saved = step
          status = "interrupted"
          break
        if tc.debug_step_sleep_s:
          time.sleep(tc.debug_step_sleep_s)
  finally:
    bar.close()
    checkpointer.close()  # waits for the pending asynchronous save
    writer.close()
  if status == "stopped_nonfinite":
    raise FloatingPointError(
        f"{consecutive} non-finite losses in a row (steps {nonfinite_steps[-consecutive:]}; "
        f"train.max_consecutive_nonfinite={tc.max_consecutive_nonfinite}): run stopped; the last checkpoint is step "
        f"{checkpointer.latest_step()} in {checkpointer.directory}")
  tokens_per_s = batch_size * seq_len / statistics.median(times) if times else None
  return {
      "job": cfg.job, "status": status, "step": step, "start_step": start_step, "total_steps": total,
      "final_loss": losses.get(step), "first_loss": losses.get(start_step + 1), "num_skipped": skipped_total,
      "nonfinite_steps": nonfinite_steps, "tokens_per_s": tokens_per_s,
      "mfu": mfu(step_flops, statistics.median(times), peak, num_devices) if times else None,
      "peak_flops_per_device": peak, "checkpoint_dir": str(checkpointer.directory),
      "latest_checkpoint": checkpointer.latest_step(),
  }


def run(config, workdir: str) -> dict:
  """Stage entry point for config.job in {"pretrain", "sft"}: train (or resume) in `workdir`, return a summary; a
  completed run writes <workdir>/run.json."""
  cfg = resolve_config(config)
  distributed.initialize(cfg.distributed)  # before any JAX computation
  logging.getLogger("absl").addFilter(_QUIET_ORBAX)  # idempotent: a Filter object is added once
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  parent = _parent_run(cfg)
  model_cfg = parent.model if parent is not None else cfg.model
  tokenizer, tok_record = prepare_tokenizer(cfg, model_cfg, workdir, parent)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"tokenizer {tok_record['path']} has {tokenizer.vocab_size} pieces > model.vocab_size="
                     f"{model_cfg.vocab_size}")
  mesh = msharding.make_mesh(cfg.mesh.shape)
  optimizer, schedule = make_optimizer(cfg.optimizer, cfg.train.total_steps)
  train_step = make_train_step(model_cfg, optimizer, next_token_loss(model_cfg), mesh=mesh, rules=cfg.sharding.rules,
                               grad_accum_steps=cfg.train.grad_accum_steps)
  checkpointer = Checkpointer(workdir / "checkpoints", keep=cfg.train.keep_checkpoints,
                              async_save=cfg.train.async_checkpoint)
  iterator = ITERATORS[cfg.job](cfg.data, tokenizer, process_index=jax.process_index(),
                                process_count=jax.process_count())
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state(model_cfg, optimizer), train_step.state_shardings)
  latest = checkpointer.latest_step()
  if latest is not None:
    iterator.set_state(checkpointer.restore_host(latest))
    state = checkpointer.restore(latest, abstract)
    origin = f"resumed from step {latest}"
  elif parent is not None:
    state = new_state(train_step, model_cfg, optimizer, cfg.seed, params=parent.load_params(abstract["params"]))
    origin = f"initialised from {cfg.init_from}"
  else:
    state = new_state(train_step, model_cfg, optimizer, cfg.seed)
    origin = "fresh init"
  log.info("%s: %s, %d params, %s", cfg.job, origin, model_cfg.num_params(), workdir)
  summary = train_loop(cfg, workdir, model_cfg=model_cfg, train_step=train_step, state=state, iterator=iterator,
                       checkpointer=checkpointer, schedule=schedule, batch_size=cfg.data.batch_size,
                       seq_len=cfg.data.seq_len)
  parents = (parent.path,) if parent is not None else ()
  if summary["status"] == "completed":
    write_run(workdir, job=cfg.job, model=model_cfg, tokenizer=tok_record, step=summary["step"], config=cfg,
              parents=parents)
  return {**summary, "origin": origin, "workdir": str(workdir), "tokenizer": tok_record["path"],
          "parents": list(parents), "num_params": model_cfg.num_params()}
