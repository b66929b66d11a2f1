"""Bounds on how long code takes that hold on any machine: CPU time (a loaded machine stretches wall time, not CPU
time), compared with a reference workload measured on the same machine (a slower CPU gets a proportionally larger
bound)."""
import functools
import time


def cpu_seconds(fn) -> tuple:
  """(fn(), CPU seconds this process spent in it)."""
  t = time.process_time()
  out = fn()
  return out, time.process_time() - t


def _reference() -> int:
  x = 0
  for i in range(1_000_000):
    x += i * i % 7
  return x


@functools.cache
def machine_unit() -> float:
  """CPU seconds of a fixed pure-Python workload here (the least of 3 runs; 0.04 s on the developers' machine)."""
  return min(cpu_seconds(_reference)[1] for _ in range(3))
