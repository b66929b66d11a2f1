"""Page-record readers: JSONL, Parquet, WARC (HTML -> text with resiliparse) and WET (Common Crawl plain text).

A page record is a dict with at least 'url' (str) and 'text' (str); any other fields ride along as metadata.
Every reader is a generator over one file, so a Beam transform can fan out over files (see beam_pipeline.ReadPages).
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Callable, Iterator

REQUIRED_FIELDS = ("url", "text")


class RecordError(ValueError):
  """A malformed input record; the message names the file and line (or record offset)."""


def check_page(page: object, where: str) -> dict:
  """`page` if it is a dict with non-empty string 'url' and string 'text'; else RecordError naming `where`."""
  if not isinstance(page, dict):
    raise RecordError(f"{where}: expected a JSON object, got {type(page).__name__}")
  for field in REQUIRED_FIELDS:
    if field not in page:
      raise RecordError(f"{where}: missing field {field!r}")
    if not isinstance(page[field], str):
      raise RecordError(f"{where}: field {field!r} must be a string, got {type(page[field]).__name__}")
  if not page["url"].strip():
    raise RecordError(f"{where}: empty 'url'")
  return page


def _open_text(path: str):
  return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def read_jsonl_pages(path: str) -> Iterator[dict]:
  """Page records from a JSONL file (optionally .gz); blank lines are an error, like any malformed line."""
  with _open_text(path) as f:
    for lineno, line in enumerate(f, 1):
      where = f"{path}:{lineno}"
      try:
        page = json.loads(line)
      except json.JSONDecodeError as e:
        raise RecordError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from e
      yield check_page(page, where)


def read_parquet_pages(path: str) -> Iterator[dict]:
  """Page records from a Parquet file with string columns 'url' and 'text' (others kept as metadata)."""
  import pyarrow.parquet as pq
  table = pq.read_table(path)
  missing = [c for c in REQUIRED_FIELDS if c not in table.column_names]
  if missing:
    raise RecordError(f"{path}: missing column(s) {missing}; columns are {table.column_names}")
  for batch in table.to_batches():
    for i, row in enumerate(batch.to_pylist()):
      yield check_page(row, f"{path}: row {i}")


def _warc_records(path: str, record_types) -> Iterator:
  from fastwarc.warc import ArchiveIterator
  with open(path, "rb") as f:  # compression (gzip/zstd/lz4) is auto-detected
    yield from ArchiveIterator(f, record_types=record_types, parse_http=True, stream_detect=True)


def read_wet_pages(path: str) -> Iterator[dict]:
  """Page records from a Common Crawl WET file: 'conversion' records carry already-extracted plain text."""
  from fastwarc.warc import WarcRecordType
  for record in _warc_records(path, WarcRecordType.conversion):
    url = record.headers.get("WARC-Target-URI")
    where = f"{path}: record at byte {record.stream_pos}"
    text = record.reader.read().decode("utf-8", errors="replace")
    yield check_page({"url": url, "text": text, "warc_record_id": record.record_id}, where)


def html_to_text(html: bytes, charset: str | None = None) -> str:
  """Main text of an HTML document (resiliparse; boilerplate such as scripts and navigation dropped)."""
  from resiliparse.extract.html2text import extract_plain_text
  from resiliparse.parse.encoding import bytes_to_str, detect_encoding
  from resiliparse.parse.html import HTMLTree
  text = bytes_to_str(html, charset or detect_encoding(html))
  return extract_plain_text(HTMLTree.parse(text), main_content=True)


def read_warc_pages(path: str) -> Iterator[dict]:
  """Page records from a WARC file: HTML 'response' records, converted to text with resiliparse."""
  from fastwarc.warc import WarcRecordType
  for record in _warc_records(path, WarcRecordType.response):
    content_type = (record.http_content_type or "").lower()
    if record.http_headers is None or "html" not in content_type:
      continue  # images, PDFs, robots.txt: not pages this pipeline can score
    url = record.headers.get("WARC-Target-URI")
    where = f"{path}: record at byte {record.stream_pos}"
    text = html_to_text(record.reader.read(), record.http_charset)
    yield check_page({"url": url, "text": text, "warc_record_id": record.record_id}, where)


# Reader registry: file-name suffix -> reader. Longest suffix wins (".warc.wet.gz" before ".gz" cases).
READERS: dict[str, Callable[[str], Iterator[dict]]] = {
    ".jsonl": read_jsonl_pages,
    ".jsonl.gz": read_jsonl_pages,
    ".parquet": read_parquet_pages,
    ".warc.wet": read_wet_pages,
    ".warc.wet.gz": read_wet_pages,
    ".wet": read_wet_pages,
    ".wet.gz": read_wet_pages,
    ".warc": read_warc_pages,
    ".warc.gz": read_warc_pages,
}


def reader_for(path: str) -> Callable[[str], Iterator[dict]]:
  """The reader registered for the suffix of `path` (ValueError naming the file if none)."""
  name = os.path.basename(path)
  for suffix in sorted(READERS, key=len, reverse=True):
    if name.endswith(suffix):
      return READERS[suffix]
  raise ValueError(f"{path}: no page reader for this file type; known suffixes: {sorted(READERS)}")


def read_pages(path: str) -> Iterator[dict]:
  """Page records from any supported file (dispatch on suffix)."""
  return reader_for(path)(path)


