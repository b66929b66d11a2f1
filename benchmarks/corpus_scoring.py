"""fastText scoring docs/s/core inside the Beam pipeline vs a plain predict loop, and decontamination MB/s/core.

python -m benchmarks.corpus_scoring [--docs 10000] [--reps 5]
Medians of --reps runs after one warm-up. The Beam figure includes pipeline construction and DirectRunner overhead
(Create -> BatchElements -> ScoreFn (model loaded in DoFn.setup) -> Count), i.e. what a real stage pays.
"""
import argparse
import json
import tempfile

import apache_beam as beam

from dsmath.corpus import beam_pipeline, classifier, decontam
from dsmath.paths import shared_data_dir
from benchmarks.timing import median_time


def _texts():
  root = shared_data_dir()
  web = [json.loads(l)["text"] for f in ("web/dclm_agreement_data.jsonl", "web/dclm_majority_data.jsonl")
         for l in open(root / f, encoding="utf-8")]
  math = [f"{r['problem']}\n{r['solution']}" for r in map(json.loads, open(root / "math/train.jsonl"))][:2000]
  return web, math


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--docs", type=int, default=10000)
  ap.add_argument("--reps", type=int, default=5)
  args = ap.parse_args()
  web, math = _texts()
  pool = web + math
  docs = [{"url": f"https://b.example/{i}", "text": pool[i % len(pool)], "canonical_url": f"b.example/{i}",
           "domain": "b.example"} for i in range(args.docs)]
  tmp = tempfile.mkdtemp()
  model_path = f"{tmp}/clf.bin"
  classifier.train_classifier(math[:1000], web[:400], classifier.ClassifierParams(
      num_positives=1000, num_negatives=400, epoch=5, dim=32, bucket=200_000), model_path)
  model = classifier.load_classifier(model_path)

  def plain_loop():
    for d in docs:
      model.predict(classifier.normalize_text(d["text"]), k=2)

  def beam_run(batch, options):
    def go():
      with beam.Pipeline(options=beam_pipeline.pipeline_options("DirectRunner", options)) as p:
        _ = (p | beam.Create(docs) | beam_pipeline.ScorePages(model_path, batch) | beam.combiners.Count.Globally())
    return go

  rows = []
  t_plain = median_time(plain_loop, args.reps)
  plain = args.docs / t_plain
  rows.append(("plain loop `model.predict(text)`", 1, plain, 1.0))
  for name, batch, opts, cores in [
      ("Beam DirectRunner, batch 1", 1, {}, 1),
      ("Beam DirectRunner, batch 512", 512, {}, 1),
      ("Beam DirectRunner multi_processing x2, batch 512", 512,
       {"direct_num_workers": 2, "direct_running_mode": "multi_processing"}, 2),
  ]:
    t = median_time(beam_run(batch, opts), args.reps)
    rate = args.docs / t / cores
    rows.append((name, cores, rate, rate / plain))

  index = decontam.build_index(shared_data_dir())
  hasher = decontam.TokenHasher()
  corpus = pool * 3
  nbytes = sum(len(t.encode("utf-8")) for t in corpus)
  t_dec = median_time(lambda: [decontam.decontaminate_text(t, index, hasher) for t in corpus], args.reps)
  print(f"docs={args.docs}, reps={args.reps} (median after warm-up)\n")
  print("| scoring path | cores | docs/s/core | ratio to plain loop |\n|---|---:|---:|---:|")
  for name, cores, rate, ratio in rows:
    print(f"| {name} | {cores} | {rate:,.0f} | {ratio:.2f} |")
  print(f"\n| decontamination (10-gram, {len(index.hashes):,} benchmark n-grams) | MB/s/core |\n|---|---:|")
  print(f"| decontaminate_text over {len(corpus)} docs ({nbytes / 1e6:.1f} MB) | {nbytes / t_dec / 1e6:.2f} |")


if __name__ == "__main__":
  main()
