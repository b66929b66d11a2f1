"""Timing shared by the benchmark scripts."""
import statistics
import time


def median_time(fn, reps: int) -> float:
  """Median wall seconds of `fn()` over `reps` runs after one warm-up run."""
  fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)
