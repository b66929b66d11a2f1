"""Random-access record sources over JSONL, Parquet and ArrayRecord files (globs), as Grain MapDatasets.

A record is a dict. Random access (not streaming) is what makes the pipeline shardable per host, shufflable per
epoch and exactly resumable from a Grain iterator state (a position, not a file offset).

Paths may start with `shared:`, meaning the benchmark folder (dsmath.paths.shared_data_dir(): ../shared/data, or where
$DSMATH_SHARED_DATA or `python -m dsmath.data.fetch` put it), or with `toy:`, meaning that folder when there is one and
else the small subset shipped with the package (dsmath.paths.toy_data_dir(); what the toy recipe reads).
Bad input: a malformed JSONL line raises RecordError naming the file and line; with on_error="skip" every malformed
line is found when the source is opened, left out, counted and logged (file and line numbers), never dropped
silently. A glob matching nothing raises FileNotFoundError naming the pattern.
"""
from __future__ import annotations

import bisect
import glob
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import grain
import numpy as np

from dsmath.data.config import resolve_source
from dsmath.paths import FETCH_COMMAND, SCHEMES, resolve_data_path

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet", "array_record")
ON_ERROR = ("raise", "skip")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".array_record": "array_record",
               ".arrayrecord": "array_record"}


class RecordError(ValueError):
  """A malformed record; the message names the file and line (JSONL) or record/row index (ArrayRecord/Parquet)."""


def resolve_path(path: str | os.PathLike) -> str:
  """`shared:<rel>` / `toy:<rel>` -> the file in the data folder they name (dsmath.paths.resolve_data_path); other
  paths unchanged (user `~` expanded)."""
  return resolve_data_path(path)


def expand_paths(patterns: str | Sequence[str]) -> list[str]:
  """Sorted files matching the glob(s); each pattern must match at least one file."""
  if isinstance(patterns, (str, os.PathLike)):
    patterns = [patterns]
  files = []
  for pattern in patterns:
    resolved = resolve_path(pattern)
    matches = sorted(glob.glob(resolved))
    if not matches:
      hint = f" (from {pattern!r})" if resolved != pattern else ""
      if str(pattern).startswith(tuple(SCHEMES)):
        hint += f"; `{FETCH_COMMAND} --list` says which dataset holds it, `{FETCH_COMMAND} --only <name>` fetches it"
      raise FileNotFoundError(f"no file matches {resolved!r}{hint}")
    files.extend(m for m in matches if os.path.isfile(m))
  if not files:
    raise FileNotFoundError(f"{list(patterns)} match only directories, no files")
  return files


def infer_format(path: str) -> str:
  ext = Path(path).suffix.lower()
  if ext not in _EXTENSIONS:
    raise ValueError(f"cannot infer the format of {path!r} from its extension; set `format` to one of {FORMATS}")
  return _EXTENSIONS[ext]


class JsonlFile:
  """Random access to the JSON objects of one JSONL file by record index (blank lines are not records).

  Indexing reads the file once to find line starts (numpy, no per-line Python). Reads use os.pread on a descriptor
  opened lazily per process, so the object pickles cheaply into Grain worker processes.
  """

  def __init__(self, path: str, on_error: str = "raise"):
    self.path = path
    with open(path, "rb") as f:
      data = f.read()
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(data) and data[-1:] != b"\n":
      ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
    lineno = np.arange(1, len(starts) + 1, dtype=np.int64)
    # Blank (whitespace-only) lines carry no record; short lines are checked in Python, which is rare.
    lengths = ends - starts
    keep = lengths > 0
    for i in np.flatnonzero((lengths > 0) & (lengths < 8)):
      keep[i] = bool(data[starts[i]:ends[i]].strip())
    self.skipped: list[int] = []  # line numbers of malformed lines left out (on_error="skip")
    if on_error == "skip":
      for i in np.flatnonzero(keep):
        try:
          _as_object(json.loads(data[starts[i]:ends[i]]))
        except (ValueError, TypeError):
          keep[i] = False
          self.skipped.append(int(lineno[i]))
    self._starts, self._ends, self._lineno = starts[keep], ends[keep], lineno[keep]
    self._fd, self._pid = None, None

  def __len__(self) -> int:
    return len(self._starts)

  def line_of(self, index: int) -> int:
    return int(self._lineno[index])

  def __getitem__(self, index: int) -> dict:
    if self._pid != os.getpid():
      self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
    start, end = int(self._starts[index]), int(self._ends[index])
    raw = os.pread(self._fd, end - start, start)
    try:
      return _as_object(json.loads(raw))
    except (ValueError, TypeError) as e:
      raise RecordError(f"{self.path}:{self.line_of(index)}: malformed JSONL line ({e}); set on_error='skip' "
                        "to leave such lines out (they are counted and reported)") from None

  def where(self, index: int) -> str:
    return f"{self.path}:{self.line_of(index)}"

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_fd"], state["_pid"] = None, None
    return state


def _as_object(value):
  if not isinstance(value, dict):
    raise TypeError(f"expected a JSON object, got {type(value).__name__}")
  return value


class ParquetFile:
  """Random access to the rows of one Parquet file (one row group cached per process)."""

  def __init__(self, path: str, columns: Sequence[str] | None = None, on_error: str = "raise"):
    import pyarrow.parquet as pq
    self.path, self.columns = path, (list(columns) if columns else None)
    meta = pq.ParquetFile(path).metadata
    if self.columns:
      names = meta.schema.to_arrow_schema().names
      missing = [c for c in self.columns if c not in names]
      if missing:
        raise RecordError(f"{path}: missing column(s) {missing}; columns are {names}")
    self._offsets = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    self.skipped: list[int] = []
    self._cache = None

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def __getitem__(self, index: int) -> dict:
    import pyarrow.parquet as pq
    group = bisect.bisect_right(self._offsets, index) - 1
    if self._cache is None or self._cache[0] != (os.getpid(), group):
      table = pq.ParquetFile(self.path).read_row_group(group, columns=self.columns)
      self._cache = ((os.getpid(), group), table.to_pylist())
    return self._cache[1][index - int(self._offsets[group])]

  def where(self, index: int) -> str:
    return f"{self.path}: row {index}"

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"] = None
    return state


class ArrayRecordFile:
  """Random access to one ArrayRecord file whose records are UTF-8 JSON objects (what dsmath.corpus writes)."""

  def __init__(self, path: str, on_error: str = "raise"):
    self.path = path
    self._source = grain.sources.ArrayRecordDataSource([path])
    keep = np.arange(len(self._source), dtype=np.int64)
    self.skipped: list[int] = []
    if on_error == "skip":
      good = []
      for i in range(len(self._source)):
        try:
          _as_object(json.loads(self._source[i]))
          good.append(i)
        except (ValueError, TypeError):
          self.skipped.append(i)
      keep = np.asarray(good, np.int64)
    self._index = keep

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> dict:
    record = int(self._index[index])
    try:
      return _as_object(json.loads(self._source[record]))
    except (ValueError, TypeError) as e:
      raise RecordError(f"{self.path}: record {record}: malformed JSON record ({e}); set on_error='skip' to leave "
                        "such records out (they are counted and reported)") from None

  def where(self, index: int) -> str:
    return f"{self.path}: record {int(self._index[index])}"


class RecordSource(grain.sources.RandomAccessDataSource):
  """The records of several files of one format, concatenated; `skipped` lists what on_error='skip' left out."""

  def __init__(self, patterns: str | Sequence[str], fmt: str | None = None, *, on_error: str = "raise",
               columns: Sequence[str] | None = None):
    if on_error not in ON_ERROR:
      raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    self.files = expand_paths(patterns)
    fmts = {fmt or infer_format(f) for f in self.files}
    if len(fmts) != 1 or not fmts <= set(FORMATS):
      raise ValueError(f"one format per source, one of {FORMATS}; got {sorted(fmts)} for {self.files}")
    self.format = fmts.pop()
    if self.format == "jsonl":
      self._parts = [JsonlFile(f, on_error) for f in self.files]
    elif self.format == "parquet":
      self._parts = [ParquetFile(f, columns, on_error) for f in self.files]
    else:
      self._parts = [ArrayRecordFile(f, on_error) for f in self.files]
    self._offsets = np.cumsum([0] + [len(p) for p in self._parts])
    self.skipped = {p.path: list(p.skipped) for p in self._parts if p.skipped}

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def _locate(self, index: int):
    index = int(index) % len(self)  # Grain may index past the end when repeating
    part = bisect.bisect_right(self._offsets, index) - 1
    return self._parts[part], index - int(self._offsets[part])

  def __getitem__(self, index: int) -> dict:
    part, local = self._locate(index)
    return part[local]

  def where(self, index: int) -> str:
    part, local = self._locate(index)
    return part.where(local)

  def __repr__(self):
    return f"RecordSource({self.format}, files={len(self.files)}, records={len(self)})"


# ---- formatters: record -> text for pre-training sources without a plain text field ----

_CALC = re.compile(r"<<[^<>]*>>")


def gsm8k_text(record: Mapping) -> str:
  """A GSM8K train record as a worked solution: calculator annotations removed, `#### x` kept as the answer line."""
  return f"Question: {record['question']}\nAnswer: {_CALC.sub('', record['answer'])}"


def math_text(record: Mapping) -> str:
  return f"Problem: {record['problem']}\nSolution: {record['solution']}"


FORMATTERS: dict[str, Callable[[Mapping], str]] = {"gsm8k": gsm8k_text, "math": math_text}


class TextOf:
  """record -> text: a registered formatter, else the text field. Errors name the record's file and line."""

  def __init__(self, source: RecordSource, text_field: str = "text", formatter: str | None = None):
    if formatter and formatter not in FORMATTERS:
      raise KeyError(f"unknown formatter {formatter!r}; valid formatters: {sorted(FORMATTERS)}")
    self.source, self.text_field, self.formatter = source, text_field, formatter

  def __call__(self, index: int) -> str:
    record = self.source[index]
    try:
      text = FORMATTERS[self.formatter](record) if self.formatter else record[self.text_field]
    except KeyError as e:
      raise RecordError(f"{self.source.where(index)}: record has no field {e.args[0]!r}; its fields are "
                        f"{sorted(record)}") from None
    if not isinstance(text, str):
      raise RecordError(f"{self.source.where(index)}: field {self.text_field!r} is {type(text).__name__}, not text")
    return text


def open_source(cfg, default_on_error: str = "raise") -> RecordSource:
  """A RecordSource for one source (a dsmath.data.config.SourceConfig, or its mapping form)."""
  src = resolve_source(cfg)
  columns = None if src.formatter or not src.text_field else [src.text_field]
  source = RecordSource(src.path, src.format or None, on_error=src.on_error or default_on_error, columns=columns)
  for path, lines in source.skipped.items():
    shown = lines[:20] + (["..."] if len(lines) > 20 else [])
    log.warning("skipped %d malformed record(s) in %s at %s %s", len(lines), path,
                "line(s)" if source.format == "jsonl" else "record(s)", shown)
  return source


def iter_source_texts(sources: Mapping[str, Any]) -> Iterator[str]:
  """The texts of named sources (SourceConfigs or mappings), each in file order, sources in name order (for
  tokenizer training)."""
  for name in sorted(sources):
    src = resolve_source(sources[name], f"sources.{name}")
    source = open_source(src)
    text_of = TextOf(source, src.text_field or "text", src.formatter or None)
    for i in range(len(source)):
      yield text_of(i)


def dataset_of_texts(source: RecordSource, text_field: str = "text", formatter: str | None = None) -> grain.MapDataset:
  """A MapDataset of the source's texts (str), same indexing as the source."""
  return grain.MapDataset.range(len(source)).map(TextOf(source, text_field, formatter))
