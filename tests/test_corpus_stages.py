"""Stage functions on hand-built examples: URL dedup, selection, domain ratios, annotations, stop rule, bad input."""
import json
import random

import ml_collections
import pytest

from dsmath.corpus import beam_pipeline, domains, pipeline, records, selection, urls


def test_canonical_url_and_dedup():
  same = ["https://www.Example.com/a/b/?utm_source=x&q=1#frag", "http://example.com/a//b?q=1", "example.com:80/a/./b?q=1",
          "https://example.com/a/b/c/../?fbclid=1&q=1"]
  assert len({urls.canonical_url(u) for u in same}) == 1
  assert urls.canonical_url("https://example.com/a?q=2") != urls.canonical_url(same[0])
  assert urls.canonical_url("https://example.com:8080/a") == "example.com:8080/a"
  assert urls.url_domain("https://www.Math.Example.com:8080/x") == "math.example.com"
  pages = [{"url": u, "text": f"t{i}"} for i, u in enumerate(same + ["https://other.org/p"])]
  kept = list(urls.dedup_pages(pages))
  assert len(kept) == 2
  assert kept[0]["url"] == min(same)  # deterministic representative
  assert {p["domain"] for p in kept} == {"example.com", "other.org"}


def test_global_cutoff_is_partition_invariant():
  rng = random.Random(0)
  scored = [{"canonical_url": f"d{i % 7}.org/{i}", "score": round(rng.random(), 2), "tokens": rng.randint(1, 50)}
            for i in range(500)]
  for budget in (selection.Budget("count", 120), selection.Budget("tokens", 3000)):
    want = {p["canonical_url"] for p in selection.select_top(scored, budget)}
    items = [(selection.rank_key(p["score"], p["canonical_url"]), budget.weight(p["tokens"])) for p in scored]
    fn = beam_pipeline.BudgetPrefixFn(budget, compact_every=16)
    accs = []
    for part in (items[:100], items[100:350], items[350:]):  # three "workers"
      acc = fn.create_accumulator()
      for it in part:
        acc = fn.add_input(acc, it)
      accs.append(acc)
    cutoff = fn.extract_output(fn.merge_accumulators(accs))
    got = {p["canonical_url"] for p in scored if selection.is_selected(p["score"], p["canonical_url"], budget, cutoff)}
    assert got == want
    weight = sum(budget.weight(p["tokens"]) for p in scored if p["canonical_url"] in got)
    assert weight <= budget.value
  ranked = selection.select_top(scored, selection.Budget("count", 120))
  assert len(ranked) == 120 and min(p["score"] for p in ranked) >= max(
      p["score"] for p in scored if p["canonical_url"] not in {q["canonical_url"] for q in ranked})
  assert {p["canonical_url"] for p in selection.select_top(scored, selection.Budget("threshold", 0.9))} == {
      p["canonical_url"] for p in scored if p["score"] >= 0.9}


def test_domain_ratios_annotations_and_expansion(tmp_path):
  pages = [urls.with_url_keys({"url": f"https://m.org/q/{i}", "text": ""}) for i in range(10)]
  pages += [urls.with_url_keys({"url": f"https://m.org/shop/{i}", "text": ""}) for i in range(10)]
  pages += [urls.with_url_keys({"url": f"https://w.org/{i}", "text": ""}) for i in range(20)]
  selected = {p["canonical_url"] for p in pages[:4]} | {pages[20]["canonical_url"], pages[21]["canonical_url"]}
  table = domains.domain_table((p["domain"], p["canonical_url"] in selected) for p in pages)
  assert table == {"m.org": (4, 20), "w.org": (2, 20)}
  rows = domains.math_domains(table, 0.10)  # 2/20 = 10% is not > 10%
  assert [r["domain"] for r in rows] == ["m.org"] and rows[0]["ratio"] == pytest.approx(0.2)
  yaml_path = tmp_path / "ann.yaml"
  yaml_path.write_text("www.M.org: [/q/]\nw.org: [/]\n")
  ann = domains.load_annotations(str(yaml_path))
  assert ann == {"m.org": ["/q"], "w.org": ["/"]}
  json_path = tmp_path / "ann.json"
  json_path.write_text(json.dumps({"m.org": ["/q"]}))
  assert domains.load_annotations(str(json_path)) == {"m.org": ["/q"]}
  new = domains.annotated_positives(pages, selected, ann, {"m.org"})
  assert sorted(p["url"] for p in new) == [f"https://m.org/q/{i}" for i in range(4, 10)]  # w.org not discovered
  assert domains.under_prefix("/q", "/q") and not domains.under_prefix("/qa", "/q")
  (tmp_path / "bad.yaml").write_text("m.org: [q]\n")
  with pytest.raises(ValueError, match=r"bad.yaml.*'q' must start with '/'"):
    domains.load_annotations(str(tmp_path / "bad.yaml"))


def test_stop_rule():
  prev = {f"u{i}" for i in range(100)}
  assert domains.overlap(prev, None) is None and not domains.should_stop(None)
  cur = {f"u{i}" for i in range(2, 100)} | {"new1", "new2"}  # 98 of 100 seen before
  assert domains.overlap(cur, prev) == pytest.approx(0.98)
  assert domains.should_stop(domains.overlap(cur, prev), 0.98)
  cur3 = {f"u{i}" for i in range(3, 100)} | {"a", "b", "c"}
  assert not domains.should_stop(domains.overlap(cur3, prev), 0.98)


def test_malformed_jsonl_names_file_and_line(tmp_path):
  path = tmp_path / "pages.jsonl"
  path.write_text('{"url": "https://a.org/1", "text": "x"}\n{"url": "https://a.org/2", "text": \n')
  with pytest.raises(records.RecordError, match=r"pages.jsonl:2: malformed JSON"):
    list(records.read_pages(str(path)))
  path.write_text('{"url": "https://a.org/1"}\n')
  with pytest.raises(records.RecordError, match=r"pages.jsonl:1: missing field 'text'"):
    list(records.read_pages(str(path)))


def test_bad_config_key_is_named():
  c = ml_collections.ConfigDict({"job": "corpus", "classifier": {"epochs": 3}})
  with pytest.raises(ValueError, match=r"config\.classifier\.epochs"):
    pipeline.resolve_config(c)
  c = ml_collections.ConfigDict({"job": "corpus", "selection": {"kind": "top"}})
  with pytest.raises(ValueError, match=r"config\.selection\.kind"):
    pipeline.resolve_config(c)
  c = ml_collections.ConfigDict({"job": "corpus", "iteration": {"max_rounds": "3"}})
  with pytest.raises(ValueError, match=r"config\.iteration\.max_rounds"):
    pipeline.resolve_config(c)
