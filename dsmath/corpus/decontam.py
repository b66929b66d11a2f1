"""Benchmark decontamination by n-gram matching (the paper: any text segment sharing a 10-gram with a benchmark).

Normalisation (shared by benchmark and corpus side): tokens are runs of letters/digits (`[^\\W_]+`) and single CJK
characters, NFKC-normalised and lower-cased; punctuation, LaTeX symbols and whitespace only separate tokens.
Numbers are kept verbatim ('16' != '61', '1,000' -> '1' '000'), since benchmark variants differ mostly in numbers.
Each token maps to a stable 64-bit id (blake2b), an n-gram to a polynomial hash of its n ids (mod 2**64), computed
with numpy over the whole document. Segments are lines; a segment is contaminated if any of its tokens lies in a
matched n-gram (so n-grams spanning a line break remove both lines). A document whose removed share of characters
exceeds max_removed_fraction is dropped whole.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import numpy as np

from dsmath.files import write_atomic

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)

# Benchmark files (relative to the shared data dir) -> text fields holding questions and answers/solutions.
# Files found in the data dir but not listed here are still used, with all their string fields (see benchmark_files).
BENCHMARK_FIELDS: dict[str, tuple[str, ...]] = {
    "gsm8k/test.jsonl": ("question", "answer"),
    "math/test.jsonl": ("problem", "solution"),
    "math/math500.jsonl": ("problem", "solution", "answer"),
    "cmath/test.jsonl": ("question", "golden"),
    "mgsm_zh/test.jsonl": ("messages", "answer"),
    "sat/test.jsonl": ("question", "options"),
    "ocw/test.jsonl": ("problem", "solution", "answer"),
    "mmlu_stem/test.jsonl": ("question", "options"),
    "gaokao_mathcloze/test.jsonl": ("passage", "question", "answer"),
    "gaokao_mathqa/test.jsonl": ("passage", "question", "options"),
}
# Shared-data folders/files that are training data or web text, never benchmarks.
NON_BENCHMARK = ("web/", "gsm8k/train.jsonl", "math/train.jsonl")


class TokenHasher:
  """Token -> stable 64-bit id, memoised (one per worker; the vocabulary of a shard is small)."""

  def __init__(self):
    self._ids: dict[str, int] = {}

  def ids(self, tokens: list[str]) -> np.ndarray:
    cache = self._ids
    out = np.empty(len(tokens), np.uint64)
    for i, tok in enumerate(tokens):
      v = cache.get(tok)
      if v is None:
        v = cache[tok] = int.from_bytes(hashlib.blake2b(tok.encode("utf-8"), digest_size=8).digest(), "little")
      out[i] = v
    return out


def tokenize(text: str) -> tuple[list[str], list[tuple[int, int]]]:
  """Normalised tokens of `text` and their (start, end) character offsets in the ORIGINAL text."""
  if text.isascii():
    spans = [m.span() for m in TOKEN_RE.finditer(text)]
    low = text.lower()
    return [low[s:e] for s, e in spans], spans
  toks, spans = [], []
  for m in TOKEN_RE.finditer(text):
    toks.append(unicodedata.normalize("NFKC", m.group()).lower())
    spans.append(m.span())
  return toks, spans


def normalized_tokens(text: str) -> list[str]:
  """Just the normalised tokens (fast path: no offsets)."""
  if text.isascii():
    return TOKEN_RE.findall(text.lower())
  return [unicodedata.normalize("NFKC", t).lower() for t in TOKEN_RE.findall(text)]


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
  """Polynomial hashes of all n-grams of `ids` [L] -> [max(L - n + 1, 0)] (uint64, wrapping)."""
  count = len(ids) - n + 1
  if count <= 0:
    return np.zeros((0,), np.uint64)
  h = np.zeros(count, np.uint64)
  with np.errstate(over="ignore"):
    for k in range(n):
      h = h * _HASH_BASE + ids[k:k + count]
  return h


@dataclasses.dataclass(frozen=True)
class NGramIndex:
  """Sorted n-gram hashes of all benchmarks with, per hash, the source (benchmark file id, record line)."""
  n: int
  hashes: np.ndarray  # [H] uint64, sorted, unique
  source_file: np.ndarray  # [H] int32, index into `files`
  source_line: np.ndarray  # [H] int32, 1-based line in that file
  files: tuple[str, ...]
  items_too_short: int = 0  # benchmark fields with fewer than n tokens (cannot contaminate by an n-gram)

  def lookup(self, hashes: np.ndarray) -> np.ndarray:
    """Index into self.hashes for each query hash, -1 where absent. [Q] -> [Q] int64."""
    if len(self.hashes) == 0 or len(hashes) == 0:
      return np.full(len(hashes), -1, np.int64)
    pos = np.searchsorted(self.hashes, hashes)
    pos = np.minimum(pos, len(self.hashes) - 1)
    return np.where(self.hashes[pos] == hashes, pos, -1)

  def save(self, path: str) -> None:
    def write(tmp):
      with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare path
        np.savez(f, n=self.n, hashes=self.hashes, source_file=self.source_file, source_line=self.source_line,
                 files=np.array(self.files), items_too_short=self.items_too_short)

    write_atomic(path, write)

  @classmethod
  def load(cls, path: str) -> "NGramIndex":
    z = np.load(path)
    return cls(int(z["n"]), z["hashes"], z["source_file"], z["source_line"], tuple(str(f) for f in z["files"]),
               int(z["items_too_short"]))


def _field_texts(value) -> Iterable[str]:
  """Strings inside a benchmark field: plain strings, lists, chat turns ({'content': ...}), Python-literal lists."""
  if value is None:
    return
  if isinstance(value, str):
    stripped = value.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
      try:
        yield from _field_texts(ast.literal_eval(stripped))
        return
      except (ValueError, SyntaxError):
        pass
    yield value
  elif isinstance(value, (int, float)):
    yield str(value)
  elif isinstance(value, list):
    for v in value:
      yield from _field_texts(v)
  elif isinstance(value, dict):
    for k, v in value.items():
      if k != "role":
        yield from _field_texts(v)


def benchmark_files(data_dir: str | Path) -> list[str]:
  """Every benchmark JSONL file under the shared data dir (relative paths), i.e. all but NON_BENCHMARK."""
  root = Path(data_dir)
  found = sorted(str(p.relative_to(root)) for p in root.rglob("*.jsonl"))
  return [f for f in found if not any(f.startswith(x) for x in NON_BENCHMARK)]


def build_index(data_dir: str | Path, n: int = 10, files: list[str] | None = None) -> NGramIndex:
  """N-gram index over the questions and answers/solutions of every benchmark file (see BENCHMARK_FIELDS)."""
  root = Path(data_dir)
  files = benchmark_files(root) if files is None else files
  hasher = TokenHasher()
  chunks, src_file, src_line, too_short = [], [], [], 0
  for fi, rel in enumerate(files):
    fields = BENCHMARK_FIELDS.get(rel)
    with open(root / rel, encoding="utf-8") as f:
      for lineno, line in enumerate(f, 1):
        try:
          rec = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{root / rel}:{lineno}: malformed JSON ({e.msg})") from e
        values = [rec.get(k) for k in fields] if fields else [v for k, v in rec.items() if k not in ("id", "label")]
        for text in (t for v in values for t in _field_texts(v)):
          h = ngram_hashes(hasher.ids(normalized_tokens(text)), n)
          if len(h) == 0:
            too_short += 1
            continue
          chunks.append(h)
          src_file.append(np.full(len(h), fi, np.int32))
          src_line.append(np.full(len(h), lineno, np.int32))
  if not chunks:
    raise ValueError(f"no benchmark n-grams found under {root} (files: {files})")
  hashes = np.concatenate(chunks)
  hashes, first = np.unique(hashes, return_index=True)  # first occurrence names the source
  return NGramIndex(n, hashes, np.concatenate(src_file)[first], np.concatenate(src_line)[first], tuple(files),
                    too_short)


def decontaminate_text(text: str, index: NGramIndex, hasher: TokenHasher,
                       max_removed_fraction: float = 0.5) -> tuple[str | None, list[dict]]:
  """Remove the lines of `text` that share an n-gram with a benchmark.

  Returns (new_text, removed): new_text is `text` itself (byte-identical) when nothing matches, None when the
  document is dropped (removed share of characters > max_removed_fraction); `removed` lists each removed line with
  its index, characters, a preview and the benchmark file:line it matched.
  """
  hashes = ngram_hashes(hasher.ids(normalized_tokens(text)), index.n)
  hit = index.lookup(hashes)
  if not (hit >= 0).any():
    return text, []
  _, spans = tokenize(text)
  lines = text.splitlines(keepends=True)
  line_starts = np.cumsum([0] + [len(l) for l in lines[:-1]])
  token_line = np.searchsorted(line_starts, np.array([s for s, _ in spans]), side="right") - 1
  n = index.n
  line_source: dict[int, int] = {}
  for start in np.nonzero(hit >= 0)[0]:
    for li in np.unique(token_line[start:start + n]):
      line_source.setdefault(int(li), int(hit[start]))
  removed = []
  for li in sorted(line_source):
    h = line_source[li]
    removed.append({
        "line": li,
        "chars": len(lines[li]),
        "preview": lines[li].strip()[:160],
        "benchmark": f"{index.files[index.source_file[h]]}:{int(index.source_line[h])}",
    })
  removed_chars = sum(r["chars"] for r in removed)
  if removed_chars > max_removed_fraction * len(text):
    return None, removed
  return "".join(l for i, l in enumerate(lines) if i not in line_source), removed


def decontaminate_pages(pages: Iterable[dict], index: NGramIndex, max_removed_fraction: float = 0.5
                        ) -> tuple[list[dict], list[dict]]:
  """Stage function: (kept pages with cleaned text, report rows {url, action, removed_chars, total_chars, lines})."""
  hasher = TokenHasher()
  kept, report = [], []
  for page in pages:
    new_text, removed = decontaminate_text(page["text"], index, hasher, max_removed_fraction)
    if removed:
      report.append(report_row(page, new_text, removed))
    if new_text is not None:
      kept.append(page if new_text is page["text"] else {**page, "text": new_text})
  return kept, report


def report_row(page: dict, new_text: str | None, removed: list[dict]) -> dict:
  return {
      "url": page["url"],
      "action": "dropped" if new_text is None else "lines_removed",
      "removed_chars": sum(r["chars"] for r in removed),
      "total_chars": len(page["text"]),
      "lines": removed,
  }
