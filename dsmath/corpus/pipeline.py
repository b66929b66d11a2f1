"""The corpus stage: `run(config, workdir)` drives dedup, the mining rounds, decontamination and shard writing.

Round r: train fastText on seed (+ annotated positives so far) vs negatives -> Beam round pipeline (score, global
cutoff, domain table, annotated positives) -> statistics (pages collected, new math domains, overlap with round r-1)
-> stop when overlap >= iteration.stop_overlap (the paper: 98%) or after iteration.max_rounds.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import time

import ml_collections

from dsmath import paths
from dsmath.corpus import beam_pipeline, classifier, decontam, domains, records, selection, toy, urls


def default_config() -> ml_collections.ConfigDict:
  """Every key the corpus stage understands, with defaults (configs/corpus_*.py override them)."""
  c = ml_collections.ConfigDict()
  c.job = "corpus"
  c.workdir = ""  # default run directory for experiments/run.py (--workdir overrides)
  c.toy = ml_collections.ConfigDict({"enabled": False, **dataclasses.asdict(toy.ToyParams())})
  # Real inputs (used when toy.enabled is False): lists of file globs.
  c.inputs = ml_collections.ConfigDict({"crawl": [], "seed": [], "negatives": []})
  c.classifier = ml_collections.ConfigDict(dataclasses.asdict(classifier.ClassifierParams()))
  c.selection = ml_collections.ConfigDict({"kind": "tokens", "budget": 40e9, "threshold": 0.5})
  c.domains = ml_collections.ConfigDict({"threshold": 0.10, "annotations": ""})
  c.iteration = ml_collections.ConfigDict({"max_rounds": 5, "stop_overlap": 0.98})
  c.decontam = ml_collections.ConfigDict({"n": 10, "max_removed_fraction": 0.5, "benchmarks": []})
  c.output = ml_collections.ConfigDict({"num_shards": 2})
  # runner: any Beam runner name; the default runs in-process with no network (see beam_pipeline.LOCAL_RUNNER).
  c.beam = ml_collections.ConfigDict({"runner": beam_pipeline.LOCAL_RUNNER, "batch_size": 512, "options": {}})
  return c


FREE_FORM = ("beam.options",)  # passed through to Beam PipelineOptions as-is


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Defaults overridden by `config`; unknown keys or wrong types raise ValueError naming the key."""
  merged = default_config()

  def walk(given, into, prefix):
    for key in given.keys():
      name = f"{prefix}{key}"
      if key not in into:
        raise ValueError(f"unknown config key config.{name} (known under config.{prefix or ''}: {sorted(into.keys())})")
      value, default = given[key], into[key]
      if name in FREE_FORM:
        into[key] = value
      elif isinstance(default, ml_collections.ConfigDict):
        if not isinstance(value, (ml_collections.ConfigDict, dict)):
          raise ValueError(f"config.{name} must be a mapping, got {type(value).__name__}")
        walk(value, default, name + ".")
      else:
        ok = (isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
              or (isinstance(default, (list, tuple)) and isinstance(value, (list, tuple))))
        if not ok or (isinstance(value, bool) and not isinstance(default, bool)):
          raise ValueError(f"config.{name} must be {type(default).__name__}, got {value!r}")
        into[key] = float(value) if isinstance(default, float) else value

  walk(config, merged, "")
  if merged.selection.kind not in selection.BUDGET_KINDS:
    raise ValueError(f"config.selection.kind must be one of {selection.BUDGET_KINDS}, got {merged.selection.kind!r}")
  if not 0 < merged.iteration.stop_overlap <= 1:
    raise ValueError(f"config.iteration.stop_overlap must be in (0, 1], got {merged.iteration.stop_overlap}")
  if merged.decontam.n < 1:
    raise ValueError(f"config.decontam.n must be >= 1, got {merged.decontam.n}")
  return merged


def _globs(patterns, key: str) -> list[str]:
  files = []
  for pat in patterns:
    found = sorted(glob.glob(pat))
    if not found:
      raise FileNotFoundError(f"config.{key}: no file matches {pat!r}")
    files += found
  if not files:
    raise ValueError(f"config.{key} is empty (set it, or config.toy.enabled = True)")
  return files


def _read_all(pattern_or_files) -> list[dict]:
  files = sorted(glob.glob(pattern_or_files)) if isinstance(pattern_or_files, str) else pattern_or_files
  return [r for f in files for r in records.read_pages(f)]


def _budget(c) -> selection.Budget:
  kind = c.selection.kind
  return selection.Budget(kind, c.selection.threshold if kind == "threshold" else c.selection.budget)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Run the whole corpus pipeline; returns a JSON-serialisable summary (also workdir/summary.json, report.md)."""
  c = validate_config(config)
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  opts = beam_pipeline.pipeline_options(c.beam.runner, c.beam.options.to_dict() if hasattr(c.beam.options, "to_dict")
                                        else dict(c.beam.options))
  data_dir = paths.shared_data_dir()
  toy_manifest = None
  if c.toy.enabled:
    params = toy.ToyParams(**{k: c.toy[k] for k in c.toy.keys() if k != "enabled"})
    toy_manifest = toy.build_toy_crawl(data_dir, os.path.join(workdir, "toy_crawl"), params)
    crawl_files, seed_files, neg_files = toy_manifest["crawl_files"], [toy_manifest["seed"]], [toy_manifest["negatives"]]
  else:
    crawl_files = _globs(c.inputs.crawl, "inputs.crawl")
    seed_files = _globs(c.inputs.seed, "inputs.seed")
    neg_files = _globs(c.inputs.negatives, "inputs.negatives")
  annotations = {}
  if c.domains.annotations:
    ann_path = c.domains.annotations if os.path.isabs(c.domains.annotations) else str(paths.REPO_ROOT / c.domains.annotations)
    annotations = domains.load_annotations(ann_path)

  # Decontamination index (independent of the rounds; built once, loaded once per worker).
  t = time.perf_counter()
  index = decontam.build_index(data_dir, c.decontam.n, list(c.decontam.benchmarks) or None)
  index_path = os.path.join(workdir, "decontam_index.npz")
  index.save(index_path)
  index_seconds = time.perf_counter() - t

  # URL dedup before scoring.
  t = time.perf_counter()
  dedup_prefix = os.path.join(workdir, "dedup", "pages")
  beam_pipeline.run_dedup(crawl_files, dedup_prefix, opts)
  with open(dedup_prefix + "-counts.json") as f:
    dedup_counts = json.load(f)
  dedup_seconds = time.perf_counter() - t

  params = classifier.ClassifierParams(**c.classifier.to_dict())
  budget = _budget(c)
  positives = [r["text"] for r in _read_all(seed_files)]
  negatives = [r["text"] for r in _read_all(neg_files)]
  truth = {urls.canonical_url(u) for u in toy_manifest["math_urls"]} if toy_manifest else None
  rounds, prev_selected, known_domains, pos_urls = [], None, [], set()
  for r in range(1, c.iteration.max_rounds + 1):
    t = time.perf_counter()
    rdir = os.path.join(workdir, f"round_{r}")
    os.makedirs(rdir, exist_ok=True)
    model_path = os.path.join(rdir, "classifier.bin")
    meta = classifier.train_classifier(positives, negatives, params, model_path,
                                       {"round": r, "seed_files": seed_files, "negative_files": neg_files})
    beam_pipeline.run_round(dedup_prefix + "-*.jsonl", model_path, budget, annotations, known_domains,
                            c.domains.threshold, rdir, opts, c.beam.batch_size, params.max_chars)
    scores = _read_all_jsonl(os.path.join(rdir, "scores-*.jsonl"))
    selected = {s["canonical_url"] for s in scores if s["selected"]}
    table = {}
    for row in _read_all_jsonl(os.path.join(rdir, "domains-*.jsonl")):
      table[row["domain"]] = (row["collected"], row["total"])
    rows = domains.math_domains(table, c.domains.threshold)
    names = [row["domain"] for row in rows]
    new_domains = [d for d in names if d not in known_domains]
    new_pos = [p for p in _read_all_jsonl(os.path.join(rdir, "new_positives-*.jsonl"))
               if p["canonical_url"] not in pos_urls]
    # Benchmark text must never become a training positive: decontaminate new positives before use.
    new_pos, pos_report = decontam.decontaminate_pages(new_pos, index, c.decontam.max_removed_fraction)
    pos_urls |= {p["canonical_url"] for p in new_pos}
    ov = domains.overlap(selected, prev_selected)
    stats = {
        "round": r,
        "classifier": {"num_positives": meta["num_positives"], "num_negatives": meta["num_negatives"],
                       "train_seconds": meta["train_seconds"]},
        "pages_scored": len(scores),
        "pages_collected": len(selected),
        "tokens_collected": sum(s["tokens"] for s in scores if s["selected"]),
        "math_domains": rows,
        "new_domains": new_domains,
        "annotated_but_not_discovered": sorted(d for d in annotations if d not in names and d not in known_domains),
        "new_positives": len(new_pos),
        "new_positives_decontaminated": len(pos_report),
        "overlap_with_previous": ov,
        "seconds": round(time.perf_counter() - t, 2),
    }
    if truth is not None:  # toy crawl only: ground-truth math pages are known
      stats["toy_precision"] = len(selected & truth) / max(len(selected), 1)
      stats["toy_recall"] = len(selected & truth) / len(truth)
    classifier.write_json(os.path.join(rdir, "stats.json"), stats)
    domains.write_annotation_template(os.path.join(rdir, "annotation_template.yaml"), rows, annotations)
    rounds.append(stats)
    known_domains += new_domains
    positives += [p["text"] for p in new_pos]
    prev_selected = selected
    if domains.should_stop(ov, c.iteration.stop_overlap):
      break
  stop_reason = ("overlap" if domains.should_stop(rounds[-1]["overlap_with_previous"], c.iteration.stop_overlap)
                 else "max_rounds")

  # Decontaminate the final round's selection and write the shards.
  t = time.perf_counter()
  out_dir = os.path.join(workdir, "corpus")
  last = os.path.join(workdir, f"round_{rounds[-1]['round']}")
  beam_pipeline.run_final(os.path.join(last, "selected-*.jsonl"), index_path, c.decontam.max_removed_fraction,
                          out_dir, c.output.num_shards, opts)
  report_rows = _read_all_jsonl(os.path.join(out_dir, "decontam_report-*.jsonl"))
  manifest = write_manifest(out_dir)
  final_seconds = time.perf_counter() - t

  planted = None
  if toy_manifest:
    removed_urls = {row["url"]: row for row in report_rows}
    final_urls = {urls.canonical_url(u) for u in _selected_urls(last)}
    out_texts = [r["text"] for r in _read_all_jsonl(os.path.join(out_dir, "corpus-*.jsonl"))]
    planted = [{"url": pl["url"], "benchmark": pl["benchmark"], "how": pl["how"],
                "collected": urls.canonical_url(pl["url"]) in final_urls,
                "decontaminated": _planted_removed(pl, removed_urls),
                "in_output": any(pl["passage"].strip()[:80] in t for t in out_texts)} for pl in toy_manifest["planted"]]
  summary = {
      "job": "corpus",
      "workdir": workdir,
      "inputs": {"crawl_files": crawl_files, "seed_files": seed_files, "negative_files": neg_files},
      "dedup": dedup_counts,
      "budget": dataclasses.asdict(budget),
      "rounds": rounds,
      "stop_reason": stop_reason,
      "decontam": {
          "n": c.decontam.n, "benchmark_files": list(index.files), "benchmark_ngrams": int(len(index.hashes)),
          "documents_with_removals": sum(r["action"] == "lines_removed" for r in report_rows),
          "documents_dropped": sum(r["action"] == "dropped" for r in report_rows),
          "chars_removed": sum(r["removed_chars"] for r in report_rows),
          "by_benchmark": _by_benchmark(report_rows),
          "planted": planted,
      },
      "output": manifest,
      "seconds": {"index": round(index_seconds, 2), "dedup": round(dedup_seconds, 2),
                  "final": round(final_seconds, 2), "total": round(time.perf_counter() - start, 2)},
  }
  classifier.write_json(os.path.join(workdir, "summary.json"), summary)
  _write_report(os.path.join(workdir, "report.md"), summary, report_rows, annotations)
  return summary


def _read_all_jsonl(pattern: str) -> list[dict]:
  out = []
  for f in sorted(glob.glob(pattern)):
    with open(f, encoding="utf-8") as fh:
      for lineno, line in enumerate(fh, 1):
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{f}:{lineno}: malformed JSON ({e.msg})") from e
  return out


def _selected_urls(round_dir: str) -> list[str]:
  return [s["url"] for s in _read_all_jsonl(os.path.join(round_dir, "scores-*.jsonl")) if s["selected"]]


def _planted_removed(planted: dict, removed_by_url: dict) -> bool:
  canon = urls.canonical_url(planted["url"])
  for url, row in removed_by_url.items():
    if urls.canonical_url(url) == canon:
      return any(line["benchmark"] == planted["benchmark"] for line in row["lines"]) or row["action"] == "dropped"
  return False


def _by_benchmark(rows: list[dict]) -> dict[str, int]:
  out: dict[str, int] = {}
  for row in rows:
    for line in row["lines"]:
      name = line["benchmark"].rsplit(":", 1)[0]
      out[name] = out.get(name, 0) + 1
  return dict(sorted(out.items()))


def write_manifest(out_dir: str) -> dict:
  """manifest.json beside the shards: per-shard record counts (ArrayRecord index) and totals from the pipeline."""
  from array_record.python.array_record_module import ArrayRecordReader
  shards = []
  for path in sorted(glob.glob(os.path.join(out_dir, "corpus-*.array_record"))):
    reader = ArrayRecordReader(path)
    shards.append({"path": os.path.basename(path), "records": reader.num_records()})
    reader.close()
  with open(os.path.join(out_dir, "totals.json")) as f:
    totals = json.load(f)
  manifest = {
      "format": "ArrayRecord (+ JSONL twins); each record is UTF-8 JSON {url, domain, text, score, tokens}",
      "grain": "grain.sources.ArrayRecordDataSource([<dir>/corpus-*.array_record])",
      "token_count": "whitespace-separated words (len(text.split())), an approximation of tokenizer tokens",
      "array_record_shards": shards,
      "jsonl_shards": [os.path.basename(p) for p in sorted(glob.glob(os.path.join(out_dir, "corpus-*.jsonl")))],
      **totals,
  }
  if sum(s["records"] for s in shards) != totals["documents"]:
    raise RuntimeError(f"{out_dir}: ArrayRecord shards hold {sum(s['records'] for s in shards)} records, "
                       f"pipeline counted {totals['documents']}")
  classifier.write_json(os.path.join(out_dir, "manifest.json"), manifest)
  return manifest


def _write_report(path: str, s: dict, report_rows: list[dict], annotations: dict) -> None:
  L = ["# Corpus mining report", "", f"Workdir: `{s['workdir']}`. Total time {s['seconds']['total']} s.", "",
       f"URL dedup: {s['dedup']['records']} records -> {s['dedup']['unique']} unique canonical URLs.",
       f"Budget: {s['budget']['kind']} {s['budget']['value']:g} (global cutoff over all pages).", "",
       "## Rounds", "",
       "| round | positives | collected | tokens | math domains | new domains | new positives | overlap w/ prev |"
       + (" toy precision | toy recall |" if "toy_precision" in s["rounds"][0] else ""),
       "|---:|---:|---:|---:|---:|---|---:|---:|" + ("---:|---:|" if "toy_precision" in s["rounds"][0] else "")]
  for r in s["rounds"]:
    ov = "-" if r["overlap_with_previous"] is None else f"{r['overlap_with_previous']:.1%}"
    row = (f"| {r['round']} | {r['classifier']['num_positives']} | {r['pages_collected']} | {r['tokens_collected']} | "
           f"{len(r['math_domains'])} | {', '.join(r['new_domains']) or '-'} | {r['new_positives']} | {ov} |")
    if "toy_precision" in r:
      row += f" {r['toy_precision']:.3f} | {r['toy_recall']:.3f} |"
    L.append(row)
  L += ["", f"Stopped: {s['stop_reason']}.", ""]
  for r in s["rounds"]:
    L += [f"### Round {r['round']}: math domains (collected/total > threshold)", "",
          domains.markdown_domain_table(r["math_domains"], annotations), ""]
    if r["annotated_but_not_discovered"]:
      L += [f"Annotated but not (yet) discovered, so not expanded: {', '.join(r['annotated_but_not_discovered'])}", ""]
  d = s["decontam"]
  L += ["## Decontamination", "",
        f"{d['n']}-gram match against {len(d['benchmark_files'])} benchmark files ({d['benchmark_ngrams']} n-grams): "
        f"{d['documents_with_removals']} documents had lines removed, {d['documents_dropped']} dropped, "
        f"{d['chars_removed']} characters removed.", "", "| url | action | removed/total chars | matched benchmark | "
        "removed text |", "|---|---|---:|---|---|"]
  for row in report_rows[:30]:
    for line in row["lines"][:1]:
      preview = line["preview"][:80].replace("|", "\\|")
      L.append(f"| {row['url']} | {row['action']} | {row['removed_chars']}/{row['total_chars']} | "
               f"{line['benchmark']} | {preview} |")
  if len(report_rows) > 30:
    L += ["", f"({len(report_rows) - 30} more documents: corpus/decontam_report-*.jsonl lists every removed line.)"]
  if d["planted"] is not None:
    L += ["", "Planted test passages (toy crawl; 'in output' checks the final shards for the passage text):", "",
          "| url | benchmark | how | collected | removed by decontamination | in output |", "|---|---|---|---|---|---|"]
    for pl in d["planted"]:
      L.append(f"| {pl['url']} | {pl['benchmark']} | {pl['how']} | {pl['collected']} | {pl['decontaminated']} | "
               f"{pl['in_output']} |")
  o = s["output"]
  L += ["", "## Output", "", f"{o['documents']} documents, {o['tokens']} whitespace tokens, {o['bytes']} bytes in "
        f"{len(o['array_record_shards'])} ArrayRecord shards (+ JSONL); manifest: corpus/manifest.json.", ""]
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(L) + "\n")
  os.replace(tmp, path)
