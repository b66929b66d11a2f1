"""Atomic file writes, the one helper every stage uses: readers never see a half-written file.

Local paths: the content goes to a temporary file in the same directory, which is then renamed over the target (a
rename within one file system is atomic); a failure removes the temporary file and leaves the old target untouched.
Object stores (gs://, via etils.epath): one object write, which is atomic there.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Iterable

from etils import epath


def _is_local(path) -> bool:
  return "://" not in os.fspath(path)


def write_atomic(path, write: Callable[[str], None]) -> None:
  """Calls write(tmp_path) for a temporary path beside `path`, then renames it to `path` (local paths)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_bytes_atomic(path, data: bytes) -> None:
  if not _is_local(path):
    epath.Path(path).write_bytes(data)
    return

  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())

  write_atomic(path, write)


def write_text_atomic(path, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj: Any, *, indent: int = 1) -> None:
  """JSON (UTF-8, non-ASCII kept; values json cannot encode are written as str) written atomically."""
  write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path, records: Iterable[Any]) -> int:
  """One JSON object per line (UTF-8, non-ASCII kept), streamed to the temporary file; returns the line count."""
  count = 0

  def write(tmp):
    nonlocal count
    with open(tmp, "w", encoding="utf-8") as f:
      for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
        count += 1
      f.flush()
      os.fsync(f.fileno())

  if _is_local(path):
    write_atomic(path, write)
  else:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    count = len(lines)
    epath.Path(path).write_text("".join(lines))
  return count
