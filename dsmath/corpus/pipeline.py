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
from typing import Any, Literal, Mapping

import ml_collections

from dsmath import config as config_lib
from dsmath import paths
from dsmath.corpus import beam_pipeline, classifier, decontam, domains, records, selection, toy, urls
from dsmath.files import write_json_atomic, write_text_atomic


@dataclasses.dataclass(frozen=True)
class ToyConfig(toy.ToyParams):
  """The toy crawl built from config.data_dir (synthetic URLs, real texts) instead of config.inputs."""
  enabled: bool = False

  def params(self) -> toy.ToyParams:
    return toy.ToyParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(toy.ToyParams)})


@dataclasses.dataclass(frozen=True)
class InputsConfig:
  """Real inputs (used when toy.enabled is False): file globs."""
  crawl: tuple[str, ...] = ()
  seed: tuple[str, ...] = ()
  negatives: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
  kind: Literal["count", "tokens", "threshold"] = "tokens"
  budget: float = 40e9  # pages (count) or whitespace tokens (tokens)
  threshold: float = 0.5  # minimum score (threshold)


@dataclasses.dataclass(frozen=True)
class DomainsConfig:
  threshold: float = 0.10  # collected / total above which a domain is a math domain
  annotations: str = ""  # YAML of domain -> math URL path prefixes (relative paths: from the repository root)


@dataclasses.dataclass(frozen=True)
class IterationConfig:
  max_rounds: int = 5
  stop_overlap: float = 0.98  # the paper: stop once 98% of a round was collected in the round before

  def __post_init__(self):
    if not 0 < self.stop_overlap <= 1:
      raise ValueError(f"stop_overlap must be in (0, 1], got {self.stop_overlap}")


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
  n: int = 10
  max_removed_fraction: float = 0.5  # a page losing more than this is dropped
  benchmarks: tuple[str, ...] = ()  # benchmark files under config.data_dir; () = every benchmark

  def __post_init__(self):
    if self.n < 1:
      raise ValueError(f"n must be >= 1, got {self.n}")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
  num_shards: int = 2


@dataclasses.dataclass(frozen=True)
class BeamConfig:
  # any Beam runner name; the default runs in-process with no network (see beam_pipeline.LOCAL_RUNNER)
  runner: str = beam_pipeline.LOCAL_RUNNER
  batch_size: int = 512
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Beam PipelineOptions, passed as they are


@dataclasses.dataclass(frozen=True)
class CorpusStageConfig:
  """The corpus stage's schema (configs/corpus_*.py start from `default_config()`)."""
  job: Literal["corpus"] = "corpus"
  workdir: str = ""  # default run directory for experiments/run.py (--workdir overrides)
  # the folder of benchmark files (decontamination; the toy crawl's texts): "shared:" the benchmark folder, "toy:" that
  # or else the subset shipped with the package (dsmath.paths), or a path
  data_dir: str = "shared:"
  toy: ToyConfig = config_lib.sub(ToyConfig)
  inputs: InputsConfig = config_lib.sub(InputsConfig)
  classifier: classifier.ClassifierParams = config_lib.sub(classifier.ClassifierParams)
  selection: SelectionConfig = config_lib.sub(SelectionConfig)
  domains: DomainsConfig = config_lib.sub(DomainsConfig)
  iteration: IterationConfig = config_lib.sub(IterationConfig)
  decontam: DecontamConfig = config_lib.sub(DecontamConfig)
  output: OutputConfig = config_lib.sub(OutputConfig)
  beam: BeamConfig = config_lib.sub(BeamConfig)


def default_config() -> ml_collections.ConfigDict:
  """Every key the corpus stage understands, with its default."""
  return config_lib.config_dict(CorpusStageConfig)


def resolve_config(config) -> CorpusStageConfig:
  """The stage config checked against the schema (unknown keys and wrong types fail naming the full key path)."""
  return config_lib.resolve(CorpusStageConfig, config)


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


def run(config, workdir: str) -> dict:
  """Run the whole corpus pipeline; returns a JSON-serialisable summary (dsmath.jobs writes it) and writes report.md."""
  c = resolve_config(config)
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  opts = beam_pipeline.pipeline_options(c.beam.runner, dict(c.beam.options))
  data_dir = paths.resolve_data_path(c.data_dir)
  toy_manifest = None
  if c.toy.enabled:
    toy_manifest = toy.build_toy_crawl(data_dir, os.path.join(workdir, "toy_crawl"), c.toy.params())
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

  params = c.classifier
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
    write_json_atomic(os.path.join(rdir, "stats.json"), stats)
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
      "inputs": {"data_dir": data_dir, "crawl_files": crawl_files, "seed_files": seed_files,
                 "negative_files": neg_files},
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
  write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
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
  from dsmath.runs import provenance_markdown  # imports JAX (the machine's devices); only once there is a report
  write_text_atomic(path, "\n".join(L + provenance_markdown()) + "\n")
