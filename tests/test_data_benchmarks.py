"""Benchmark loaders name the file and the 1-based line of every malformed line (issue #15 §4): invalid UTF-8, invalid
JSON, a value that is not an object, a missing required field, a wrong-typed field."""
import json

import pytest

from dsmath.data.benchmarks import LOADERS, load_benchmark

# benchmark -> (file under the data folder, a valid row, a required field, a wrong-typed value for a field)
GOOD = {
    "math": ("math/test.jsonl", {"id": "test/algebra/1.json", "problem": "p", "level": "Level 2", "type": "Algebra",
                                 "solution": "so \\boxed{2}"}, "solution", ("problem", 5)),
    "math500": ("math/math500.jsonl", {"id": "a", "problem": "p", "solution": "\\boxed{2}", "answer": "2",
                                       "subject": "Algebra", "level": 2}, "answer", ("level", [2])),
    "gsm8k": ("gsm8k/test.jsonl", {"question": "q", "answer": "3 + 2 = 5\n#### 5"}, "question", ("answer", 5)),
    "cmath": ("cmath/test.jsonl", {"grade": 1, "question": "q", "golden": "18", "reasoning_step": 1, "num_digits": 2},
              "golden", ("grade", "first")),
    "mgsm_zh": ("mgsm_zh/test.jsonl", {"id": "0", "messages": [{"role": "user", "content": "q"}], "answer": "18"},
                "messages", ("answer", {"a": 1})),
    "sat": ("sat/test.jsonl", {"id": "0", "question": "q", "options": "A) 1 B) 2 C) 3 D) 4", "Answer": "A"}, "options",
            ("Answer", 1)),
    "mmlu_stem": ("mmlu_stem/test.jsonl", {"question": "q", "options": ["0", "4", "2", "6"], "answer": "B",
                                           "topic": "t", "id": 0}, "topic", ("options", 5)),
    "gaokao_mathqa": ("gaokao_mathqa/test.jsonl", {"passage": None, "question": "q", "label": "D", "answer": None,
                                                   "options": ["(A)1", "(B)2", "(C)3", "(D)4"],
                                                   "other": {"source": "s"}}, "label", ("other", "s")),
    "gaokao_mathcloze": ("gaokao_mathcloze/test.jsonl", {"passage": None, "question": "q", "options": None,
                                                         "label": None, "answer": "2", "other": {"source": "s"}},
                         "answer", ("question", 3)),
    "ocw": ("ocw/test.jsonl", {"problem": "p", "solution": "s", "answer": "1.6", "id": "0"}, "problem",
            ("answer", True)),
}
assert set(GOOD) == set(LOADERS) - {"synthetic"}


def _write(tmp_path, name, third_line: bytes):
  rel, row, _, _ = GOOD[name]
  path = tmp_path / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  good = json.dumps(row, ensure_ascii=False).encode()
  path.write_bytes(good + b"\n\n" + third_line + b"\n" + good + b"\n")  # line 2 is blank: numbering counts it
  return path


@pytest.mark.parametrize("name", sorted(GOOD))
def test_valid_file_loads(tmp_path, name):
  _write(tmp_path, name, json.dumps(GOOD[name][1]).encode())
  assert len(load_benchmark(name, data_dir=tmp_path)) == 3


def _bad_lines(name):
  _, row, required, (key, wrong) = GOOD[name]
  missing = {k: v for k, v in row.items() if k != required}
  return {
      "invalid UTF-8": (json.dumps(row, ensure_ascii=False).encode()[:-2] + b"\xff\xfe\"}", "invalid UTF-8"),
      "invalid JSON": (b'{"question": "q", ', "invalid JSON"),
      "null": (b"null", "expected a JSON object, got null"),
      "array": (b"[1, 2]", "expected a JSON object, got array"),
      "number": (b"7", "expected a JSON object, got number"),
      "missing field": (json.dumps(missing).encode(), f"missing field {required!r}"),
      "null field": (json.dumps({**row, required: None}).encode(), f"missing field {required!r}"),
      "wrong type": (json.dumps({**row, key: wrong}).encode(), f"field {key!r} must be"),
  }


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_bad_line_names_file_and_line(tmp_path, name):
  for what, (line, message) in _bad_lines(name).items():
    path = _write(tmp_path, name, line)
    with pytest.raises(ValueError) as e:
      load_benchmark(name, data_dir=tmp_path)
    assert str(e.value).startswith(f"{path}:3: "), (what, str(e.value))
    assert message in str(e.value), (what, str(e.value))


def test_missing_file_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="gsm8k/test.jsonl"):
    load_benchmark("gsm8k", data_dir=tmp_path)
