"""Training metrics: FLOPs and MFU, and a writer to JSONL + TensorBoard event files."""
from __future__ import annotations

import json
import sys
import time
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
from etils import epath

from dsmath.files import write_text_atomic
from dsmath.holds import hold_point
from dsmath.model import ModelConfig


def non_embedding_params(cfg: ModelConfig) -> int:
  """N of the FLOPs formula: every parameter but the input embedding table (a lookup, no FLOPs). The LM head stays
  in: it is a real [H, V] matmul per token."""
  return cfg.num_params() - cfg.vocab_size * cfg.hidden_size


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token: 6N (forward + backward of the weight matmuls) + 12 * layers * hidden * seq
  (attention scores and values, causal mask not discounted), as in the DeepSeek LLM / PaLM accounting."""
  return 6.0 * non_embedding_params(cfg) + 12.0 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len


def flops_per_step(cfg: ModelConfig, batch_size: int, seq_len: int) -> float:
  return flops_per_token(cfg, seq_len) * batch_size * seq_len


def measure_peak_flops(n: int = 1024, reps: int = 5, dtype=jnp.float32) -> float:
  """FLOP/s of one device on a jitted n x n matmul of random data (median of reps): the 'measured peak' of MFU.

  The project's benchmarks use n = 4096 (../shared/BENCHMARK-SHAPES.md); run() uses 1024 to keep start-up short.
  """
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  times.sort()
  return 2.0 * n ** 3 / times[len(times) // 2]


def mfu(flops_step: float, step_seconds: float, peak_flops_per_device: float, num_devices: int) -> float:
  return flops_step / max(step_seconds, 1e-12) / (peak_flops_per_device * num_devices)


def _summary_writer(logdir: str):
  """tensorboardX's SummaryWriter. tensorboardX imports torch (seconds of start-up) only to accept torch tensors;
  we log Python floats, so torch is hidden for that one import when nothing has imported it yet."""
  if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tensorboardX handles
    try:
      import tensorboardX  # noqa: F401
    finally:
      del sys.modules["torch"]
  from tensorboardX import SummaryWriter
  return SummaryWriter(logdir)


class MetricWriter:
  """Appends one JSON object per record to <dir>/metrics.jsonl and scalars to TensorBoard events in <dir>/tb.

  Only process 0 writes. After a resume, steps re-run since the last checkpoint are appended again (readers take the
  last record of each step), unless keep_rows is given: then the file is first cut to its first keep_rows records
  (the rows a checkpoint had seen), so a resumed run's file equals an uninterrupted run's.
  """

  def __init__(self, directory, *, enabled: Optional[bool] = None, keep_rows: Optional[int] = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.directory = epath.Path(directory)
    self._tb = None
    if self.enabled:
      self.directory.mkdir(parents=True, exist_ok=True)
      path = self.directory / "metrics.jsonl"
      if keep_rows is not None:
        rows = path.read_text().splitlines(keepends=True) if path.exists() else []
        if len(rows) < keep_rows:
          raise ValueError(f"{path} has {len(rows)} rows, fewer than the {keep_rows} its checkpoint recorded")
        write_text_atomic(path, "".join(rows[:keep_rows]))
      self._jsonl = path.open("a")
      self._tb = _summary_writer(str(self.directory / "tb"))

  def write(self, step: int, scalars: Mapping[str, float], **extra):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}, **extra}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(f"train/{k}", float(v), int(step))
    hold_point("metrics_row", int(step))

  def flush(self):
    if self.enabled:
      self._jsonl.flush()
      self._tb.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def read_metrics(path) -> dict[int, dict]:
  """metrics.jsonl -> {step: last record of that step}."""
  out = {}
  for line in epath.Path(path).read_text().splitlines():
    if line.strip():
      record = json.loads(line)
      out[record["step"]] = record
  return out
