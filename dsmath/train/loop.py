"""The train loop shared by pre-training and SFT, and the stage entry point `run(config, workdir) -> dict`.

Run directory:
  <workdir>/checkpoints/<step>/   orbax checkpoints (dsmath.train.checkpoint), the last train.keep_checkpoints kept
  <workdir>/metrics.jsonl         one record per logged step: loss, lr, grad_norm, tokens_per_s, mfu, ...
  <workdir>/tb/                   the same scalars as TensorBoard events
  <workdir>/tokenizer_ref.json    the tokenizer config this run used ({kind, path, ...}); later stages read it
  <workdir>/tokenizer/spm.model   the sentencepiece model, when trained on the fly
Re-running the same command resumes from the latest checkpoint (exactly: same losses bitwise on CPU). Ctrl-C
(SIGINT) finishes the current step, saves a checkpoint and returns with status "interrupted". NaN/inf losses skip
their update; train.max_consecutive_nonfinite of them in a row raise FloatingPointError, leaving the checkpoints
as they were.
"""
from __future__ import annotations

import json
import logging
import signal
import statistics
import threading
import time
from typing import Any, Callable

import jax
from etils import epath

from dsmath import data as data_lib
from dsmath.model import ModelConfig
from dsmath.model import sharding as msharding
from dsmath.train import distributed
from dsmath.train.checkpoint import Checkpointer, load_params
from dsmath.train.config import resolve_config
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


TOKENIZER_REF = "tokenizer_ref.json"


def _write_json_atomic(path: epath.Path, obj) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1))
  tmp.rename(path)


def prepare_tokenizer(cfg, data_cfg, workdir: epath.Path):
  """(tokenizer, path) of this run, recorded in <workdir>/tokenizer_ref.json for later stages.

  In order: data.tokenizer (if its path is set); this run's own record (a resumed run); init_from's run record (SFT
  uses its base model's tokenizer); else (pre-training) a sentencepiece model trained now on data.sources into
  <workdir>/tokenizer/spm.model.
  """
  ref = workdir / TOKENIZER_REF
  tok_cfg = data_cfg.tokenizer.to_dict() if data_cfg.tokenizer.path else None
  if tok_cfg is None and ref.exists():
    tok_cfg = json.loads(ref.read_text())
  if tok_cfg is None and cfg.init_from:
    init = epath.Path(cfg.init_from)
    for run_dir in (init, init.parent, init.parent.parent):  # a run dir, its checkpoints/ or one step directory
      if (run_dir / TOKENIZER_REF).exists():
        tok_cfg = json.loads((run_dir / TOKENIZER_REF).read_text())
        log.info("tokenizer: %s (from init_from %s)", tok_cfg["path"], run_dir)
        break
  if tok_cfg is None:
    if cfg.job != "pretrain":
      raise ValueError(f"config.data.tokenizer.path is empty and there is no {TOKENIZER_REF} in {workdir} or beside "
                       f"config.init_from={cfg.init_from!r}: set one of them (SFT uses its base model's tokenizer)")
    own = workdir / TOKENIZER_FILE
    vocab = cfg.tokenizer_training.vocab_size or ModelConfig.from_dict(cfg.model.to_dict()).vocab_size
    log.info("tokenizer: training a %d-piece sentencepiece model on config.data.sources -> %s", vocab, own)
    data_lib.train_sentencepiece_from_sources(data_cfg.sources.to_dict(), str(own), vocab_size=vocab,
                                              max_chars=cfg.tokenizer_training.max_chars)
    tok_cfg = {"kind": "sentencepiece", "path": str(own)}
  tokenizer = data_lib.load_tokenizer(tok_cfg)
  if not ref.exists():
    _write_json_atomic(ref, tok_cfg)
  return tokenizer, tok_cfg["path"]


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


def _progress(total: int, initial: int, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def train_loop(cfg, workdir, *, model_cfg: ModelConfig, train_step: TrainStep, state: dict, iterator,
               checkpointer: Checkpointer, schedule, batch_size: int, seq_len: int) -> dict:
  """Steps `state` from its step to cfg.train.total_steps on batches of `iterator`; returns the run summary."""
  tc = cfg.train
  total = int(tc.total_steps)
  step = int(jax.device_get(state["step"]))
  start_step = step
  skipped_total = int(jax.device_get(state["num_skipped"]))
  writer = MetricWriter(workdir)
  peak = float(tc.peak_flops) or measure_peak_flops()
  step_flops = flops_per_step(model_cfg, batch_size, seq_len)
  num_devices = train_step.mesh.devices.size
  consecutive, nonfinite_steps, times, losses = 0, [], [], {}
  status = "completed"
  last_saved = step if checkpointer.latest_step() == step else None
  bar = _progress(total, step, bool(tc.progress) and jax.process_index() == 0)
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
          time.sleep(float(tc.debug_step_sleep_s))
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
  """Stage entry point for config.job in {"pretrain", "sft"}: train (or resume) in `workdir`, return a summary."""
  cfg = resolve_config(config)
  distributed.initialize(cfg.distributed)  # before any JAX computation
  logging.getLogger("absl").addFilter(_QUIET_ORBAX)  # idempotent: a Filter object is added once
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  model_cfg = ModelConfig.from_dict(cfg.model.to_dict())
  data_cfg = data_lib.resolve_data_config(cfg.data)
  tokenizer, tokenizer_path = prepare_tokenizer(cfg, data_cfg, workdir)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"tokenizer {tokenizer_path} has {tokenizer.vocab_size} pieces > model.vocab_size="
                     f"{model_cfg.vocab_size}")
  mesh = msharding.make_mesh(tuple(cfg.mesh.shape))
  optimizer, schedule = make_optimizer(cfg.optimizer, cfg.train.total_steps)
  train_step = make_train_step(model_cfg, optimizer, next_token_loss(model_cfg), mesh=mesh,
                               rules=[tuple(r) for r in cfg.sharding.rules],
                               grad_accum_steps=int(cfg.train.grad_accum_steps))
  checkpointer = Checkpointer(workdir / "checkpoints", keep=int(cfg.train.keep_checkpoints),
                              async_save=bool(cfg.train.async_checkpoint))
  iterator = ITERATORS[cfg.job](data_cfg, tokenizer, process_index=jax.process_index(),
                                process_count=jax.process_count())
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state(model_cfg, optimizer), train_step.state_shardings)
  latest = checkpointer.latest_step()
  if latest is not None:
    state, data_state = checkpointer.restore(latest, abstract)
    iterator.set_state(data_state)
    origin = f"resumed from step {latest}"
  elif cfg.init_from:
    params = load_params(cfg.init_from, abstract["params"])
    state = new_state(train_step, model_cfg, optimizer, int(cfg.seed), params=params)
    origin = f"initialised from {cfg.init_from}"
  else:
    state = new_state(train_step, model_cfg, optimizer, int(cfg.seed))
    origin = "fresh init"
  log.info("%s: %s, %d params, %s", cfg.job, origin, model_cfg.num_params(), workdir)
  summary = train_loop(cfg, workdir, model_cfg=model_cfg, train_step=train_step, state=state, iterator=iterator,
                       checkpointer=checkpointer, schedule=schedule, batch_size=int(data_cfg.batch_size),
                       seq_len=int(data_cfg.seq_len))
  return {**summary, "origin": origin, "workdir": str(workdir), "tokenizer": tokenizer_path,
          "num_params": model_cfg.num_params()}
