"""10-gram decontamination removes planted GSM8K / MATH test passages and leaves clean text byte-identical."""
import json

import pytest

from dsmath.corpus import decontam
from dsmath.paths import shared_data_dir


@pytest.fixture(scope="module")
def index():
  return decontam.build_index(shared_data_dir(), n=10)


def _line(rel, lineno):
  with open(shared_data_dir() / rel, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
      if i == lineno:
        return json.loads(line)


def _web(k):
  with open(shared_data_dir() / "web/dclm_majority_data.jsonl", encoding="utf-8") as f:
    return [json.loads(line)["text"] for line in f][k]


def test_index_covers_every_benchmark(index):
  assert set(index.files) == set(decontam.benchmark_files(shared_data_dir()))
  assert {"gsm8k/test.jsonl", "math/test.jsonl", "mmlu_stem/test.jsonl", "cmath/test.jsonl"} <= set(index.files)
  assert not any("train" in f or f.startswith("web/") for f in index.files)


def test_planted_gsm8k_and_math_passages_removed(index):
  hasher = decontam.TokenHasher()
  clean_a, clean_b = _web(3), _web(4)
  gsm = _line("gsm8k/test.jsonl", 7)["question"]
  doc = f"{clean_a}\n{gsm}\n{clean_b}"
  new, removed = decontam.decontaminate_text(doc, index, hasher)
  assert new == f"{clean_a}\n{clean_b}"  # exactly the planted line went, the rest byte-identical
  assert removed[0]["benchmark"] == "gsm8k/test.jsonl:7"
  math = _line("math/test.jsonl", 42)["solution"]
  new, removed = decontam.decontaminate_text(f"{clean_a}\n{math}\n", index, hasher)
  assert "\n".join(math.splitlines()[:1]) not in new and new.startswith(clean_a)
  assert all(r["benchmark"].startswith("math/") for r in removed)
  # A document that is mostly benchmark text is dropped whole.
  new, removed = decontam.decontaminate_text(gsm + "\nthanks!", index, hasher)
  assert new is None and removed


def test_clean_text_is_byte_identical_and_numbers_matter(index):
  hasher = decontam.TokenHasher()
  for k in range(20):
    text = _web(k)
    new, removed = decontam.decontaminate_text(text, index, hasher)
    assert new is text and removed == []
  assert decontam.normalized_tokens("Costs 1,000 dollars") == ["costs", "1", "000", "dollars"]


def test_numbers_are_not_collapsed(tmp_path):
  (tmp_path / "bench").mkdir()
  q = "Tom buys 3 apples at 2 dollars and 5 pears at 4 dollars each, then pays 7 more for 9 plums."
  (tmp_path / "bench" / "test.jsonl").write_text(json.dumps({"question": q}) + "\n")
  small = decontam.build_index(tmp_path, n=10)
  altered = q.replace("3", "6").replace("5", "8").replace("7", "1")  # same words, other numbers
  pages, report = decontam.decontaminate_pages([{"url": "u", "text": altered}, {"url": "v", "text": q}], small)
  assert [p["url"] for p in pages] == ["u"] and pages[0]["text"] == altered
  assert report[0]["url"] == "v" and report[0]["action"] == "dropped" and report[0]["lines"][0]["benchmark"] == (
      "bench/test.jsonl:1")
