"""Real code text available on every machine: the Python standard library's own `.py` sources.

Used as the toy stand-in for the paper's GitHub code (Table 6's "Stage 1: Code Training"). The selection is
deterministic: files are ordered by a stable hash of their path relative to the stdlib root (so the subset is spread
over the whole library rather than alphabetically clustered), filtered by size, and taken until `max_chars`. The
JSONL written for the Grain pipeline has one record per file, {"text", "path", "sha256"}, and a manifest records the
Python version and every selected file, so a run on another interpreter can be compared (its stdlib differs).

  from dsmath.data import code_text
  files = code_text.stdlib_python_files()                      # sorted relative paths
  code_text.write_code_jsonl("runs/t6/data/code.jsonl", max_chars=3_000_000)
"""
from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from pathlib import Path

from dsmath.files import write_json_atomic, write_jsonl_atomic

# Directories of the stdlib root that are not the standard library's own code: third-party installs, vendored
# packages, caches, and encodings/ (codec tables generated from Unicode mapping files, not written code). Test
# suites are kept: they are real Python code written by the same authors.
EXCLUDED_DIRS = ("site-packages", "dist-packages", "__pycache__", "_vendor", "encodings")


def stdlib_root() -> Path:
  return Path(sysconfig.get_paths()["stdlib"])


def stdlib_python_files(root: str | os.PathLike | None = None) -> list[str]:
  """Relative paths (posix, sorted) of the stdlib's `.py` files, excluding EXCLUDED_DIRS."""
  root = Path(root) if root is not None else stdlib_root()
  if not root.is_dir():
    raise FileNotFoundError(f"stdlib directory not found: {root}")
  out = []
  for path in root.rglob("*.py"):
    rel = path.relative_to(root)
    if any(part in EXCLUDED_DIRS or part.startswith("config-") for part in rel.parts[:-1]):  # config-3.11-<arch>/
      continue
    if path.is_file():
      out.append(rel.as_posix())
  return sorted(out)


def _order_key(rel: str, seed: int) -> bytes:
  return hashlib.blake2b(f"{seed}:{rel}".encode(), digest_size=8).digest()


def select_code_files(root: str | os.PathLike | None = None, *, max_chars: int = 3_000_000, min_chars: int = 200,
                      max_file_chars: int = 60_000, seed: int = 0) -> list[tuple[str, str]]:
  """[(relative path, text)] of stdlib files with min_chars <= len <= max_file_chars, in stable-hash order of their
  paths (seeded), until max_chars characters in total. Files that are not UTF-8 are left out (there are none in
  CPython's stdlib; a patched interpreter might have some)."""
  root = Path(root) if root is not None else stdlib_root()
  selected, total = [], 0
  for rel in sorted(stdlib_python_files(root), key=lambda r: _order_key(r, seed)):
    try:
      text = (root / rel).read_text(encoding="utf-8")
    except UnicodeDecodeError:
      continue
    if not min_chars <= len(text) <= max_file_chars:
      continue
    selected.append((rel, text))
    total += len(text)
    if total >= max_chars:
      break
  if not selected:
    raise ValueError(f"no stdlib .py file of {min_chars}..{max_file_chars} characters under {root}")
  return selected


def write_code_jsonl(path: str | os.PathLike, *, root: str | os.PathLike | None = None, max_chars: int = 3_000_000,
                     min_chars: int = 200, max_file_chars: int = 60_000, seed: int = 0) -> dict:
  """Writes the selected stdlib files as JSONL {"text", "path", "sha256"} plus `<path>.manifest.json`; returns the
  manifest (python version, stdlib root, files, characters)."""
  root = Path(root) if root is not None else stdlib_root()
  files = select_code_files(root, max_chars=max_chars, min_chars=min_chars, max_file_chars=max_file_chars, seed=seed)
  records = [{"text": text, "path": rel, "sha256": hashlib.sha256(text.encode()).hexdigest()} for rel, text in files]
  write_jsonl_atomic(path, records)
  manifest = {"source": "python stdlib", "python": platform.python_version(), "stdlib_root": str(root),
              "seed": seed, "num_files": len(records), "num_chars": sum(len(r["text"]) for r in records),
              "files": [[r["path"], r["sha256"]] for r in records]}
  write_json_atomic(str(path) + ".manifest.json", manifest)
  return manifest
