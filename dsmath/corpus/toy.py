"""Toy crawl builder: a small synthetic-URL "Common Crawl" from ../shared/data, so every corpus stage does work.

Everything about URLs and domains here is SYNTHETIC (under the reserved '.example' TLD, RFC 2606); only the page
texts are real: web/ Common Crawl texts (non-math), MATH and GSM8K TRAIN problems with solutions (math). Test splits
are never used as pages except for a few planted passages that decontamination must remove.

Layout (counts from ToyParams):
- mathqa.example/problems/<subject>/<n>: MATH train pages (found by the round-1 classifier trained on MATH seeds);
  /forum/<n>: web pages.
- wordproblems.example/questions/<n>: GSM8K train pages (word problems, which a MATH-only seed under-scores);
  /blog/<n>: web pages.
- tutorhub.example: /algebra/<n> MATH, /worksheets/<n> GSM8K, /news/<n> web.
- familyblog.example/posts/<n>: web pages plus a few GSM8K pages under /posts/homework-help/ (math share < 10%).
- web-NN.example/page/<n>: the remaining web pages.
- Seeds (positives, not in the crawl): other MATH train pages. Negatives: web pages not in the crawl.
- URL variants (http/https, 'www.', utm_*, trailing '/', '#fragment') duplicate some pages for URL dedup.
- Planted: benchmark TEST passages appended as a line to some math pages, and whole test items as pages.
- Files: crawl-00000.jsonl, crawl-00001.parquet, crawl-00002.warc.gz (HTML for a few web pages), seed.jsonl,
  negatives.jsonl, toy_manifest.json (what was planted where, counts per domain).
"""
from __future__ import annotations

import dataclasses
import html
import io
import json
import os
import random
import re
from pathlib import Path

from dsmath.files import write_atomic, write_json_atomic, write_jsonl_atomic

_CALC = re.compile(r"<<[^>]*>>")


@dataclasses.dataclass(frozen=True)
class ToyParams:
  seed: int = 0
  num_seed: int = 400  # MATH train pages used as initial positives (not crawled)
  num_negatives: int = 300  # web pages used as negatives (not crawled)
  mathqa_math: int = 220
  wordproblems_math: int = 220
  tutorhub_math: int = 40  # each of /algebra (MATH) and /worksheets (GSM8K)
  familyblog_math: int = 4
  duplicate_fraction: float = 0.08
  planted_lines: int = 4  # math pages with a test-problem line appended
  planted_pages: int = 2  # whole test items as pages
  warc_pages: int = 20  # web pages stored as HTML in a WARC file


def _read(path: Path) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _math_page(rec: dict) -> str:
  return f"{rec['problem']}\n\nSolution:\n{rec['solution']}\n"


def _gsm_page(rec: dict) -> str:
  return f"{rec['question']}\n\nAnswer:\n{_CALC.sub('', rec['answer'])}\n"


def _variant(url: str, k: int) -> str:
  """A different spelling of the same page URL (same canonical URL)."""
  host_path = url.split("://", 1)[1]
  return [f"http://{host_path}", f"https://www.{host_path}", f"{url}?utm_source=feed&utm_medium=rss",
          f"{url}/", f"{url}#comments"][k % 5]


def _write_warc(path: str, pages: list[dict]) -> None:
  from warcio.statusandheaders import StatusAndHeaders
  from warcio.warcwriter import WARCWriter

  def write(tmp):
    with open(tmp, "wb") as f:
      writer = WARCWriter(f, gzip=True)
      for p in pages:
        paras = "".join(f"<p>{html.escape(line)}</p>" for line in p["text"].split("\n") if line.strip())
        body = (f"<html><head><title>page</title><script>var x=1;</script></head><body><article>{paras}</article>"
                f"</body></html>").encode("utf-8")
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(p["url"], "response", payload=io.BytesIO(body),
                                                      http_headers=headers))

  write_atomic(path, write)


def build_toy_crawl(data_dir: str | Path, out_dir: str, params: ToyParams = ToyParams()) -> dict:
  """Write the toy crawl, seeds and negatives into out_dir; returns the toy manifest (also toy_manifest.json)."""
  root = Path(data_dir)
  rng = random.Random(params.seed)
  os.makedirs(out_dir, exist_ok=True)
  web = [r["text"] for r in _read(root / "web/dclm_agreement_data.jsonl") + _read(root / "web/dclm_majority_data.jsonl")]
  math_train = _read(root / "math/train.jsonl")
  gsm_train = _read(root / "gsm8k/train.jsonl")
  math_test = _read(root / "math/test.jsonl")
  gsm_test = _read(root / "gsm8k/test.jsonl")
  for xs in (web, math_train, gsm_train):
    rng.shuffle(xs)

  negatives, web = web[:params.num_negatives], web[params.num_negatives:]
  seed_pages, math_pool = math_train[:params.num_seed], math_train[params.num_seed:]
  web_it, math_it, gsm_it = iter(web), iter(math_pool), iter(gsm_train)
  pages: list[dict] = []

  def add(url: str, text: str, kind: str):
    pages.append({"url": url, "text": text, "kind": kind})

  for i in range(params.mathqa_math):
    rec = next(math_it)
    add(f"https://mathqa.example/problems/{rec['type'].lower().replace(' ', '-').replace('&', 'and')}/{i}",
        _math_page(rec), "math")
  for i in range(30):
    add(f"https://mathqa.example/forum/{i}", next(web_it), "web")
  for i in range(params.wordproblems_math):
    add(f"https://wordproblems.example/questions/{i}", _gsm_page(next(gsm_it)), "math")
  for i in range(30):
    add(f"https://wordproblems.example/blog/{i}", next(web_it), "web")
  for i in range(params.tutorhub_math):
    add(f"https://tutorhub.example/algebra/{i}", _math_page(next(math_it)), "math")
    add(f"https://tutorhub.example/worksheets/{i}", _gsm_page(next(gsm_it)), "math")
  for i in range(60):
    add(f"https://tutorhub.example/news/{i}", next(web_it), "web")
  for i in range(params.familyblog_math):
    add(f"https://familyblog.example/posts/homework-help/{i}", _gsm_page(next(gsm_it)), "math")
  for i in range(80):
    add(f"https://familyblog.example/posts/{i}", next(web_it), "web")
  rest = list(web_it)
  for i, text in enumerate(rest):
    add(f"https://web-{i % 10:02d}.example/page/{i}", text, "web")

  # Planted benchmark TEST text: a problem line appended to math pages, and whole test items as pages.
  planted = []
  math_idx = [i for i, p in enumerate(pages) if p["kind"] == "math" and "familyblog" not in p["url"]]
  short_math = [(j, r) for j, r in enumerate(math_test, 1) if 20 <= len(r["problem"].split()) <= 60]
  short_gsm = [(j, r) for j, r in enumerate(gsm_test, 1) if 20 <= len(r["question"].split()) <= 60]
  for k, pi in enumerate(rng.sample(math_idx, params.planted_lines)):
    file, (line, rec) = ("math/test.jsonl", rng.choice(short_math)) if k % 2 == 0 else ("gsm8k/test.jsonl",
                                                                                       rng.choice(short_gsm))
    passage = rec.get("problem") or rec["question"]
    pages[pi]["text"] += "Related problem: " + passage.replace("\n", " ") + "\n"
    planted.append({"url": pages[pi]["url"], "benchmark": f"{file}:{line}", "how": "line appended",
                    "passage": passage})
  for k in range(params.planted_pages):
    if k % 2 == 0:
      line, rec = rng.choice(short_gsm)
      url, text, file = f"https://wordproblems.example/questions/t{k}", _gsm_page(rec), "gsm8k/test.jsonl"
    else:
      line, rec = rng.choice(short_math)
      url, text, file = f"https://mathqa.example/problems/test-{k}", _math_page(rec), "math/test.jsonl"
    add(url, text, "math")
    planted.append({"url": url, "benchmark": f"{file}:{line}", "how": "whole page", "passage": text})

  # URL variants of some pages: the same page crawled under another spelling of its URL.
  dups = [{**p, "url": _variant(p["url"], k)} for k, p in enumerate(rng.sample(pages, int(params.duplicate_fraction
                                                                                        * len(pages))))]
  crawl = pages + dups
  rng.shuffle(crawl)
  warc_ids = {id(p) for p in [p for p in crawl if p["kind"] == "web"][:params.warc_pages]}
  warc = [p for p in crawl if id(p) in warc_ids]
  rest = [p for p in crawl if id(p) not in warc_ids]
  half = len(rest) // 2
  files = {
      "jsonl": os.path.join(out_dir, "crawl-00000.jsonl"),
      "parquet": os.path.join(out_dir, "crawl-00001.parquet"),
      "warc": os.path.join(out_dir, "crawl-00002.warc.gz"),
  }
  write_jsonl_atomic(files["jsonl"], ({"url": p["url"], "text": p["text"]} for p in rest[:half]))
  import pyarrow as pa
  import pyarrow.parquet as pq
  table = pa.table({"url": [p["url"] for p in rest[half:]], "text": [p["text"] for p in rest[half:]]})
  write_atomic(files["parquet"], lambda tmp: pq.write_table(table, tmp))
  _write_warc(files["warc"], warc)
  seed_path = os.path.join(out_dir, "seed.jsonl")
  neg_path = os.path.join(out_dir, "negatives.jsonl")
  write_jsonl_atomic(seed_path, ({"url": f"https://seed.example/math/{r['id']}", "text": _math_page(r)}
                                 for r in seed_pages))
  write_jsonl_atomic(neg_path, ({"url": f"https://negatives.example/{i}", "text": t} for i, t in enumerate(negatives)))
  manifest = {
      "synthetic": "URLs and domains are synthetic ('.example'); texts are real (web/, MATH and GSM8K train).",
      "crawl_files": list(files.values()),
      "seed": seed_path,
      "negatives": neg_path,
      "pages": len(pages),
      "records_with_url_variants": len(crawl),
      "math_pages": sum(p["kind"] == "math" for p in pages),
      "web_pages": sum(p["kind"] == "web" for p in pages),
      "planted": planted,
      "math_urls": sorted(p["url"] for p in pages if p["kind"] == "math"),
  }
  write_json_atomic(os.path.join(out_dir, "toy_manifest.json"), manifest)
  return manifest
