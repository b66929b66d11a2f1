"""Apache Beam transforms composing the stage functions; in-process FnApiRunner by default, any runner by name.

Round pipeline: ReadPages -> (dedup already materialised) -> ScorePages (fastText, model loaded once per worker in
DoFn.setup, batched predict) -> GlobalCutoff (one CombineGlobally over (rank_key, weight), a single-tuple side
input) -> selected pages, DomainCounts (CombinePerKey) and AnnotatedPositives (discovered-domain side input).
Final pipeline: Decontaminate (n-gram index loaded once per worker) -> WriteShards (ArrayRecord + JSONL, byte-identical
across runs).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from dsmath.corpus import classifier, decontam, domains, records, selection, urls
from dsmath.files import write_atomic


# Beam's DirectRunner (2.77) first tries the Prism runner, which downloads a Go binary from GitHub on every run and has
# no option to switch that off; the FnApiRunner is what DirectRunner falls back to for these batch pipelines: pure
# Python, in-process, no binary, no network. Other runners (DataflowRunner, FlinkRunner, SparkRunner, PrismRunner,
# DirectRunner itself) are used when named.
LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(runner: str = LOCAL_RUNNER, options: dict | None = None) -> PipelineOptions:
  """PipelineOptions from config values (e.g. runner='DataflowRunner', options={'project': ..., 'region': ...}).

  flags=[]: the options come from the config alone; by default Beam would also parse this process's sys.argv.
  """
  return PipelineOptions(flags=[], runner=runner, **(options or {}))


def _local_copy(path: str) -> str:
  """A local file for `path` (gs://, s3://, ... copied once to a temp dir): fastText only opens local files."""
  if os.path.exists(path):
    return path
  local = os.path.join(tempfile.mkdtemp(prefix="dsmath_corpus_"), os.path.basename(path))
  with FileSystems.open(path) as src, open(local, "wb") as dst:
    shutil.copyfileobj(src, dst)
  return local


class ReadPages(beam.PTransform):
  """Page records from JSONL / Parquet / WARC / WET files (one reader call per file, then redistributed)."""

  def __init__(self, files: list[str]):
    super().__init__()
    self._files = list(files)

  def expand(self, pbegin):
    return (pbegin | "Files" >> beam.Create(self._files)
            | "Read" >> beam.FlatMap(records.read_pages)
            | "Redistribute" >> beam.Reshuffle())


class DedupByUrl(beam.PTransform):
  """One page per canonical URL (urls.pick_representative is commutative and associative)."""

  def expand(self, pages):
    return (pages | "KeyByCanonicalUrl" >> beam.Map(lambda p: (urls.canonical_url(p["url"]), p))
            | "PickRepresentative" >> beam.CombinePerKey(lambda ps: functools.reduce(urls.pick_representative, ps))
            | "AddUrlKeys" >> beam.MapTuple(lambda key, page: urls.with_url_keys(page, key)))


class ScoreFn(beam.DoFn):
  """Adds 'score' (P(math)) and 'tokens' to a batch of pages; the model is loaded once per worker."""

  def __init__(self, model_path: str, max_chars: int):
    self._model_path = model_path
    self._max_chars = max_chars
    self._model = None

  def setup(self):
    self._model = classifier.load_classifier(_local_copy(self._model_path))

  def process(self, batch):
    scores = classifier.score_texts(self._model, [p["text"] for p in batch], self._max_chars)
    for page, score in zip(batch, scores):
      yield {**page, "score": float(score), "tokens": selection.count_tokens(page["text"])}


class ScorePages(beam.PTransform):

  def __init__(self, model_path: str, batch_size: int = 512, max_chars: int = 20_000):
    super().__init__()
    self._model_path, self._batch_size, self._max_chars = model_path, batch_size, max_chars

  def expand(self, pages):
    return (pages | "Batch" >> beam.BatchElements(min_batch_size=self._batch_size, max_batch_size=self._batch_size)
            | "Score" >> beam.ParDo(ScoreFn(self._model_path, self._max_chars)))


class BudgetPrefixFn(beam.CombineFn):
  """Global top-by-budget prefix of (rank_key, weight); exact and mergeable (see selection.truncate_ranked)."""

  def __init__(self, budget: selection.Budget, compact_every: int = 8192):
    self._budget = budget
    self._compact_every = compact_every

  def create_accumulator(self):
    return []

  def add_input(self, acc, item):
    acc.append(item)
    if len(acc) >= self._compact_every and len(acc) % self._compact_every == 0:
      acc[:] = selection.truncate_ranked(acc, self._budget)
    return acc

  def merge_accumulators(self, accs):
    return selection.truncate_ranked([x for a in accs for x in a], self._budget)

  def extract_output(self, acc):
    return selection.cutoff_from_prefix(selection.truncate_ranked(acc, self._budget))


class MarkSelected(beam.PTransform):
  """Adds 'selected' to every scored page, from one global cutoff (or the threshold)."""

  def __init__(self, budget: selection.Budget):
    super().__init__()
    self._budget = budget

  def expand(self, scored):
    budget = self._budget
    if budget.kind == "threshold":
      cutoff = scored.pipeline | "NoCutoff" >> beam.Create([None])
    else:
      cutoff = (scored | "RankKeys" >> beam.Map(
          lambda p: (selection.rank_key(p["score"], p["canonical_url"]), budget.weight(p["tokens"])))
                | "GlobalCutoff" >> beam.CombineGlobally(BudgetPrefixFn(budget)))
    return scored | "Mark" >> beam.Map(
        lambda p, c: {**p, "selected": selection.is_selected(p["score"], p["canonical_url"], budget, c)},
        c=beam.pvalue.AsSingleton(cutoff))


class DomainCounts(beam.PTransform):
  """(domain, (collected, total)) for every domain."""

  def expand(self, marked):
    return (marked | "DomainPairs" >> beam.Map(lambda p: (p["domain"], (int(p["selected"]), 1)))
            | "SumPerDomain" >> beam.CombinePerKey(functools.partial(sum_tuples, width=2)))


def sum_tuples(values, width: int) -> tuple:
  """Element-wise sum of fixed-width tuples (a commutative, associative combine; (0,)*width for no input)."""
  out = [0] * width
  for v in values:
    for i in range(width):
      out[i] += v[i]
  return tuple(out)


class AnnotatedPositives(beam.PTransform):
  """Uncollected pages under annotated prefixes of discovered math domains (this round's + earlier rounds')."""

  def __init__(self, annotations: dict, earlier_domains: list[str], threshold: float):
    super().__init__()
    self._annotations, self._earlier, self._threshold = annotations, list(earlier_domains), threshold

  def expand(self, inputs):
    marked, counts = inputs
    threshold, earlier, annotations = self._threshold, set(self._earlier), self._annotations
    discovered = (counts | "MathDomains" >> beam.Filter(lambda kv: kv[1][1] and kv[1][0] / kv[1][1] > threshold)
                  | "DomainName" >> beam.Map(lambda kv: kv[0]))
    return marked | "UnderAnnotatedPath" >> beam.FlatMap(
        lambda p, names: domains.annotated_positives([p], set(), annotations, set(names) | earlier)
        if not p["selected"] else [], names=beam.pvalue.AsList(discovered))


def _json_line(rec: dict, drop=()) -> str:
  return json.dumps({k: v for k, v in rec.items() if k not in drop}, ensure_ascii=False)


def run_dedup(files: list[str], out_prefix: str, opts: PipelineOptions) -> None:
  """Read all inputs, dedup by canonical URL, write '<out_prefix>-*.jsonl' plus input/output counts."""
  with beam.Pipeline(options=opts) as p:
    pages = p | "ReadPages" >> ReadPages(files)
    unique = pages | "Dedup" >> DedupByUrl()
    unique | "WritePages" >> beam.Map(_json_line) | "WriteJsonl" >> beam.io.WriteToText(out_prefix, ".jsonl")
    counts = ((pages | "CountIn" >> beam.combiners.Count.Globally() | "TagIn" >> beam.Map(lambda n: ("records", n))),
              (unique | "CountOut" >> beam.combiners.Count.Globally() | "TagOut" >> beam.Map(lambda n: ("unique", n))))
    (counts | "Counts" >> beam.Flatten() | "ToDict" >> beam.combiners.ToDict()
     | "CountsJson" >> beam.Map(json.dumps)
     | "WriteCounts" >> beam.io.WriteToText(out_prefix + "-counts", ".json", shard_name_template=""))


def run_round(pages_glob: str, model_path: str, budget: selection.Budget, annotations: dict,
              earlier_domains: list[str], domain_threshold: float, out_dir: str, opts: PipelineOptions,
              batch_size: int = 512, max_chars: int = 20_000) -> None:
  """One mining round over deduped pages: score, global cutoff, domain counts, annotated new positives.

  Writes into out_dir: selected-*.jsonl (selected pages, with text and score), scores-*.jsonl (every page's url,
  domain, score, tokens, selected; no text), domains-*.jsonl and new_positives-*.jsonl.
  """
  with beam.Pipeline(options=opts) as p:
    pages = p | "ReadDeduped" >> beam.io.ReadFromText(pages_glob) | "Parse" >> beam.Map(json.loads)
    marked = pages | "ScorePages" >> ScorePages(model_path, batch_size, max_chars) | "Select" >> MarkSelected(budget)
    counts = marked | "DomainCounts" >> DomainCounts()
    positives = (marked, counts) | "AnnotatedPositives" >> AnnotatedPositives(annotations, earlier_domains,
                                                                                 domain_threshold)
    (marked | "OnlySelected" >> beam.Filter(lambda r: r["selected"]) | "SelJson" >> beam.Map(_json_line)
     | "WriteSelected" >> beam.io.WriteToText(os.path.join(out_dir, "selected"), ".jsonl"))
    (marked | "ScoreJson" >> beam.Map(_json_line, drop=("text",))
     | "WriteScores" >> beam.io.WriteToText(os.path.join(out_dir, "scores"), ".jsonl"))
    (counts | "DomainJson" >> beam.MapTuple(lambda d, ct: json.dumps({"domain": d, "collected": ct[0], "total": ct[1]}))
     | "WriteDomains" >> beam.io.WriteToText(os.path.join(out_dir, "domains"), ".jsonl"))
    (positives | "PosJson" >> beam.Map(_json_line)
     | "WritePositives" >> beam.io.WriteToText(os.path.join(out_dir, "new_positives"), ".jsonl"))


class DecontamFn(beam.DoFn):
  """Removes benchmark-contaminated lines; main output: cleaned pages, tagged output 'report': report rows."""

  def __init__(self, index_path: str, max_removed_fraction: float):
    self._index_path, self._max_removed_fraction = index_path, max_removed_fraction

  def setup(self):
    self._index = decontam.NGramIndex.load(_local_copy(self._index_path))
    self._hasher = decontam.TokenHasher()

  def process(self, page):
    new_text, removed = decontam.decontaminate_text(page["text"], self._index, self._hasher,
                                                    self._max_removed_fraction)
    if removed:
      yield beam.pvalue.TaggedOutput("report", decontam.report_row(page, new_text, removed))
    if new_text is not None:
      yield page if new_text is page["text"] else {**page, "text": new_text}


def shard_of(url: str, num_shards: int) -> int:
  """A URL's corpus shard: stable across runs, processes and machines (Python's hash() is salted per process)."""
  return int.from_bytes(hashlib.blake2b(url.encode("utf-8"), digest_size=8).digest(), "big") % num_shards


def _publish(write, path: str) -> None:
  """write(local_file), then the file appears at `path` whole: renamed beside it for local paths, streamed in one
  object for gs:// and the other Beam filesystems (whose objects appear when closed)."""
  if FileSystems.get_scheme(path) is None:
    write_atomic(path, write)
    return
  with tempfile.TemporaryDirectory(prefix="dsmath_shard_") as tmp:
    local = os.path.join(tmp, os.path.basename(path))
    write(local)
    with open(local, "rb") as src, FileSystems.create(path) as dst:
      shutil.copyfileobj(src, dst)


class _WriteShardFn(beam.DoFn):
  def __init__(self, prefix: str, num_shards: int):
    self._prefix, self._num_shards = prefix, num_shards

  def process(self, item):
    from array_record.python.array_record_module import ArrayRecordWriter
    shard, recs = item
    recs = sorted((r for r in recs if r is not None), key=lambda r: (r["url"], r["text"]))
    name = f"{self._prefix}-{shard:05d}-of-{self._num_shards:05d}"

    def write_array_record(path):
      writer = ArrayRecordWriter(path, "group_size:1")  # one record per chunk: cheap random access for Grain
      for r in recs:
        writer.write(json.dumps(r, ensure_ascii=False).encode("utf-8"))
      writer.close()

    def write_jsonl(path):
      with open(path, "w", encoding="utf-8") as f:
        f.writelines(_json_line(r) + "\n" for r in recs)

    _publish(write_array_record, name + ".array_record")
    _publish(write_jsonl, name + ".jsonl")
    yield name


class WriteShards(beam.PTransform):
  """Corpus records -> <prefix>-SSSSS-of-NNNNN.array_record + .jsonl twins, every shard written (empty ones too).

  Records go to the shard of a stable hash of their URL and are sorted by URL inside it, so the same selection gives
  byte-identical shards on every run and the Grain mixture reads the same documents in the same order (Beam's own
  sinks split elements in arrival order, which changes from run to run). A shard is sorted in one worker's memory:
  raise num_shards for large corpora.
  """

  def __init__(self, prefix: str, num_shards: int):
    super().__init__()
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    self._prefix, self._num_shards = prefix, num_shards

  def expand(self, recs):
    n = self._num_shards
    keyed = recs | "KeyByShard" >> beam.Map(lambda r: (shard_of(r["url"], n), r))
    every = recs.pipeline | "EveryShard" >> beam.Create([(i, None) for i in range(n)])
    return ((keyed, every) | "Flatten" >> beam.Flatten() | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(self._prefix, n)))


def output_record(page: dict) -> dict:
  """The record stored in corpus shards (what the Grain mixture reads)."""
  return {"url": page["url"], "domain": page["domain"], "text": page["text"], "score": page["score"],
          "tokens": selection.count_tokens(page["text"])}


def run_final(selected_glob: str, index_path: str, max_removed_fraction: float, out_dir: str, num_shards: int,
              opts: PipelineOptions) -> None:
  """Decontaminate the selected pages and write corpus-*.array_record + corpus-*.jsonl shards, report and totals."""
  with beam.Pipeline(options=opts) as p:
    pages = p | "ReadSelected" >> beam.io.ReadFromText(selected_glob) | "Parse" >> beam.Map(json.loads)
    cleaned = pages | "Decontaminate" >> beam.ParDo(DecontamFn(index_path, max_removed_fraction)).with_outputs(
        "report", main="pages")
    recs = cleaned.pages | "OutputRecord" >> beam.Map(output_record)
    recs | "WriteShards" >> WriteShards(os.path.join(out_dir, "corpus"), num_shards)
    (cleaned.report | "ReportJson" >> beam.Map(_json_line)
     | "WriteReport" >> beam.io.WriteToText(os.path.join(out_dir, "decontam_report"), ".jsonl", num_shards=1))
    (recs | "DocTokens" >> beam.Map(lambda r: (1, r["tokens"], len(r["text"].encode("utf-8"))))
     | "Totals" >> beam.CombineGlobally(functools.partial(sum_tuples, width=3))
     | "TotalsJson" >> beam.Map(lambda t: json.dumps({"documents": t[0], "tokens": t[1], "bytes": t[2]}))
     | "WriteTotals" >> beam.io.WriteToText(os.path.join(out_dir, "totals"), ".json", shard_name_template=""))
