"""<workdir>/rollouts.jsonl: one JSON object per rollout (step, question, text, rule verdict, training reward and what
a learned reward model said of it), so a reader can see exactly what the reward model rewarded and the grader did not.

Written by process 0 only. A resumed run first cuts the file to the rows of the steps its checkpoint had finished,
so the file of a resumed run equals an uninterrupted run's.
"""
from __future__ import annotations

import json

import jax
from etils import epath

from dsmath.files import write_text_atomic

FILE = "rollouts.jsonl"


class RolloutLog:

  def __init__(self, directory, *, keep_through_step: int | None = None, enabled: bool = True):
    self.enabled = enabled and jax.process_index() == 0
    self._f = None
    if not self.enabled:
      return
    path = epath.Path(directory) / FILE
    if keep_through_step is not None and path.exists():
      kept = [line for line in path.read_text().splitlines(keepends=True)
              if line.strip() and json.loads(line)["step"] <= keep_through_step]
      write_text_atomic(path, "".join(kept))
    elif keep_through_step is None and path.exists():
      path.unlink()  # a fresh run: no rows of an earlier one
    self._f = path.open("a")

  def write(self, step: int, records: list[dict]) -> None:
    if self._f is None:
      return
    self._f.write("".join(json.dumps({"step": int(step), **r}) + "\n" for r in records))
    self._f.flush()

  def close(self) -> None:
    if self._f is not None:
      self._f.close()
      self._f = None


def read_rollouts(directory) -> list[dict]:
  path = epath.Path(directory) / FILE
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
