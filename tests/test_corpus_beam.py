"""The Beam pipeline (default in-process runner) selects the same pages as the stage functions run directly; shards
read by Grain."""
import glob
import json
import os
import sys

import grain
from apache_beam.runners.portability import prism_runner

from dsmath.corpus import beam_pipeline, classifier, decontam, domains, pipeline, records, selection, toy, urls
from dsmath.paths import shared_data_dir

# Audit events recorded while a test holds _AUDIT (a list); audit hooks cannot be removed, so one hook is installed
# for the whole session and is a no-op otherwise.
_AUDIT = None
_NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request")


def _audit_hook(event, args):
  if _AUDIT is None:
    return
  if event in _NETWORK_EVENTS or event == "subprocess.Popen":
    _AUDIT.append((event, repr(args)[:200]))
  elif event in ("open", "os.mkdir", "os.rename", "os.replace") and "prism" in str(args[0]):
    _AUDIT.append((event, repr(args)[:200]))


sys.addaudithook(_audit_hook)


def test_default_runner_is_in_process_without_network(tmp_path, monkeypatch):
  """The corpus stage's default runner makes no network attempt (DirectRunner used to fetch the Prism binary from
  GitHub on every run), starts no subprocess and writes nothing to the Prism binary cache; explicit names still go
  to Beam."""
  global _AUDIT
  pages = tmp_path / "pages.jsonl"
  pages.write_text("".join(json.dumps({"url": u, "text": t}) + "\n" for u, t in [
      ("https://a.example/x", "one"), ("http://www.a.example/x/", "two"), ("https://b.example/y?utm_source=z", "3")]))
  c = pipeline.default_config()
  assert c.beam.runner == beam_pipeline.LOCAL_RUNNER
  opts = beam_pipeline.pipeline_options(c.beam.runner, c.beam.options.to_dict())
  cache_before = sorted(os.listdir(prism_runner.PrismJobServer.BIN_CACHE)) if os.path.isdir(
      prism_runner.PrismJobServer.BIN_CACHE) else None
  _AUDIT = []
  try:
    beam_pipeline.run_dedup([str(pages)], str(tmp_path / "dedup" / "pages"), opts)
    events = list(_AUDIT)
  finally:
    _AUDIT = None
  assert events == []
  cache_after = sorted(os.listdir(prism_runner.PrismJobServer.BIN_CACHE)) if os.path.isdir(
      prism_runner.PrismJobServer.BIN_CACHE) else None
  assert cache_after == cache_before
  out = [json.loads(l) for f in glob.glob(str(tmp_path / "dedup" / "pages-*.jsonl")) for l in open(f)]
  assert sorted(p["url"] for p in out) == ["http://www.a.example/x/", "https://b.example/y?utm_source=z"]
  # The options come from the config only, not from this process's argv.
  monkeypatch.setattr(sys, "argv", ["corpus", "--direct_num_workers=3"])
  assert beam_pipeline.pipeline_options().get_all_options()["direct_num_workers"] == 1
  # Other runners stay reachable by name.
  for name in ("DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner", "DirectRunner"):
    assert beam_pipeline.pipeline_options(name, {"project": "p"}).get_all_options()["runner"] == name


def test_beam_matches_stage_functions_and_writes_grain_shards(tmp_path):
  params = toy.ToyParams(num_seed=150, num_negatives=150, mathqa_math=60, wordproblems_math=60, tutorhub_math=10,
                         warc_pages=5)
  crawl = toy.build_toy_crawl(shared_data_dir(), str(tmp_path / "toy"), params)
  pos = [r["text"] for r in records.read_pages(crawl["seed"])]
  neg = [r["text"] for r in records.read_pages(crawl["negatives"])]
  model_path = str(tmp_path / "clf.bin")
  classifier.train_classifier(pos, neg, classifier.ClassifierParams(
      num_positives=200, num_negatives=200, lr=0.1, epoch=5, dim=16, bucket=50_000), model_path)
  budget = selection.Budget("tokens", 8000)
  annotations = {"mathqa.example": ["/problems"], "wordproblems.example": ["/questions"]}
  opts = beam_pipeline.pipeline_options()

  # Beam: dedup, then one round.
  prefix = str(tmp_path / "dedup" / "pages")
  beam_pipeline.run_dedup(crawl["crawl_files"], prefix, opts)
  beam_pipeline.run_round(prefix + "-*.jsonl", model_path, budget, annotations, [], 0.10, str(tmp_path / "r1"), opts,
                          batch_size=64)
  beam_scores = [json.loads(l) for f in glob.glob(str(tmp_path / "r1" / "scores-*.jsonl")) for l in open(f)]
  beam_selected = {s["canonical_url"] for s in beam_scores if s["selected"]}
  beam_new_pos = {json.loads(l)["canonical_url"] for f in glob.glob(str(tmp_path / "r1" / "new_positives-*.jsonl"))
                  for l in open(f)}

  # Stage functions directly.
  pages = list(urls.dedup_pages(p for f in crawl["crawl_files"] for p in records.read_pages(f)))
  assert len(beam_scores) == len(pages) < crawl["records_with_url_variants"]
  scores = classifier.score_texts(classifier.load_classifier(model_path), [p["text"] for p in pages])
  scored = [{**p, "score": float(s), "tokens": selection.count_tokens(p["text"])} for p, s in zip(pages, scores)]
  direct = selection.select_top(scored, budget)
  direct_selected = {p["canonical_url"] for p in direct}
  assert beam_selected == direct_selected and 0 < len(direct_selected) < len(pages)
  table = domains.domain_table((p["domain"], p["canonical_url"] in direct_selected) for p in scored)
  found = {r["domain"] for r in domains.math_domains(table, 0.10)}
  direct_new_pos = {p["canonical_url"] for p in domains.annotated_positives(scored, direct_selected, annotations, found)}
  assert beam_new_pos == direct_new_pos

  # Final pipeline: decontaminate and write ArrayRecord + JSONL shards that Grain reads.
  index = decontam.build_index(shared_data_dir(), 10, ["gsm8k/test.jsonl", "math/test.jsonl"])
  index.save(str(tmp_path / "index.npz"))
  out = str(tmp_path / "corpus")
  beam_pipeline.run_final(str(tmp_path / "r1" / "selected-*.jsonl"), str(tmp_path / "index.npz"), 0.5, out, 2, opts)
  shards = sorted(glob.glob(os.path.join(out, "corpus-*.array_record")))
  assert len(shards) == 2
  source = grain.sources.ArrayRecordDataSource(shards)
  docs = [json.loads(source[i]) for i in range(len(source))]
  kept, _ = decontam.decontaminate_pages([p for p in direct], index)
  assert sorted(d["url"] for d in docs) == sorted(p["url"] for p in kept)
  by_url = {p["url"]: p["text"] for p in kept}
  assert all(d["text"] == by_url[d["url"]] for d in docs)
  jsonl = [json.loads(l) for f in glob.glob(os.path.join(out, "corpus-*.jsonl")) for l in open(f)]
  assert len(jsonl) == len(docs) and len(glob.glob(os.path.join(out, "corpus-*.jsonl"))) == 2
  # Deterministic shards: a URL's shard is a stable hash, records sorted by URL inside; a second run writes the same
  # bytes (Beam's own sinks split elements in arrival order, so Grain would read another data order).
  for s, path in enumerate(shards):
    urls_in = [json.loads(r)["url"] for r in grain.sources.ArrayRecordDataSource([path])]
    assert urls_in == sorted(urls_in) and all(beam_pipeline.shard_of(u, 2) == s for u in urls_in)
  again = str(tmp_path / "corpus_again")
  beam_pipeline.run_final(str(tmp_path / "r1" / "selected-*.jsonl"), str(tmp_path / "index.npz"), 0.5, again, 2, opts)
  for name in ("corpus-00000-of-00002.array_record", "corpus-00001-of-00002.array_record",
               "corpus-00000-of-00002.jsonl", "corpus-00001-of-00002.jsonl"):
    with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
      assert a.read() == b.read(), name
  assert not glob.glob(os.path.join(out, "*.tmp"))
