"""A clone on its own (issue #23 §6): where data comes from (dsmath.paths), the fetch command's conversions of the
upstream file shapes (dsmath.data.fetch), and the toy subset shipped for the toy recipe. Fixture files are written
here in the upstream shapes; no test touches the network (a guard makes any connection attempt fail)."""
import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsmath import paths
from dsmath.corpus import decontam, toy
from dsmath.data import benchmarks, fetch
from dsmath.data.sources import resolve_path

SUBJECTS = fetch.MATH_SUBJECTS


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any connection or name lookup in this process fails (the converters and --from never need one)."""
  def refuse(*args, **kwargs):
    raise OSError("network access in a test")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _problem(i: int, subject: str) -> dict:
  return {"problem": f"What is {i} + {i} in {subject}? It costs \u20ac{i}.", "level": f"Level {1 + i % 5}",
          "type": subject.replace("_", " ").title(), "solution": f"It is $\\boxed{{{2 * i}}}$."}


def _write_math_tar(path: Path, problems: dict[str, dict]) -> None:
  """MATH.tar's shape: MATH/<split>/<subject>/<n>.json, pretty-printed JSON, members in no particular order."""
  members = list(problems.items())
  random.Random(0).shuffle(members)
  with tarfile.open(path, "w") as tar:
    for name, row in members + [("MATH/README.md", "not a problem")]:
      data = (json.dumps(row, indent=4) if isinstance(row, dict) else row).encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


MATH_PROBLEMS = {f"MATH/{split}/{subject}/{n}.json": _problem(n, subject)
                 for split, subject, n in [("train", "algebra", 10), ("train", "algebra", 3), ("train", "algebra", 0),
                                           ("train", "precalculus", 7), ("train", "geometry", 2),
                                           ("test", "algebra", 1), ("test", "number_theory", 4)]}


def _lines(path: Path) -> list[str]:
  return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


# ---------------------------------------------------------------------------------------------------------------------
# Converters on the upstream shapes.

def test_gsm8k_from_the_repository_jsonl_is_kept_byte_for_byte(tmp_path):
  src = tmp_path / "train.jsonl"
  lines = ['{"question": "Janet\\u2019s ducks lay 16 eggs.", "answer": "16 - 3 = <<16-3=13>>13\\n#### 13"}',
           '{"question": "A robe takes 2 bolts.", "answer": "2/2=<<2/2=1>>1\\n#### 3"}']
  src.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
  assert list(fetch.convert_gsm8k([src], "gsm8k/train.jsonl")) == lines


def test_gsm8k_from_the_hub_parquet(tmp_path):
  rows = {"question": ["Janet\u2019s ducks lay 16 eggs.", "How many?"], "answer": ["x\n#### 13", "y\n#### 3"]}
  (tmp_path / "main").mkdir()
  pq.write_table(pa.table(rows), tmp_path / "main" / "train-00000-of-00001.parquet")
  got = [json.loads(line) for line in fetch.convert_gsm8k([tmp_path], "gsm8k/train.jsonl")]
  assert got == [{"question": q, "answer": a} for q, a in zip(rows["question"], rows["answer"])]
  assert list(fetch.convert_gsm8k([tmp_path], "gsm8k/train.jsonl"))[0] == json.dumps(got[0], ensure_ascii=False)


@pytest.mark.parametrize("shape", ["tar", "folder"])
def test_math_from_the_authors_per_problem_files(tmp_path, shape):
  tar = tmp_path / "MATH.tar"
  _write_math_tar(tar, MATH_PROBLEMS)
  src = tar
  if shape == "folder":
    with tarfile.open(tar) as t:
      t.extractall(tmp_path / "x", filter="data")
    src = tmp_path / "x" / "MATH"
  train = [json.loads(line) for line in fetch.convert_math([src], "math/train.jsonl")]
  # ordered by subject, then problem number (not text order: 3 before 10), each the file's fields after its path
  assert [r["id"] for r in train] == ["train/algebra/0.json", "train/algebra/3.json", "train/algebra/10.json",
                                      "train/geometry/2.json", "train/precalculus/7.json"]
  assert [list(r) for r in train] == [["id", "problem", "level", "type", "solution"]] * 5
  assert train[2] == {"id": "train/algebra/10.json", **_problem(10, "algebra")}
  test = list(fetch.convert_math([src], "math/test.jsonl"))
  assert [json.loads(line)["id"] for line in test] == ["test/algebra/1.json", "test/number_theory/4.json"]
  assert test[0] == json.dumps({"id": "test/algebra/1.json", **_problem(1, "algebra")}, ensure_ascii=False)


def test_math_from_the_hub_parquet(tmp_path):
  for subject in SUBJECTS:
    (tmp_path / subject).mkdir()
    for split in ("train", "test"):
      rows = [_problem(i, subject) for i in range(2 if split == "train" else 1)]
      pq.write_table(pa.Table.from_pylist(rows), tmp_path / subject / f"{split}-00000-of-00001.parquet")
  train = [json.loads(line) for line in fetch.convert_math([tmp_path], "math/train.jsonl")]
  assert [r["id"] for r in train] == [f"train/{s}/hf-{i}" for s in SUBJECTS for i in range(2)]
  assert train[3] == {"id": "train/counting_and_probability/hf-1", **_problem(1, "counting_and_probability")}
  assert len(list(fetch.convert_math([tmp_path], "math/test.jsonl"))) == len(SUBJECTS)
  (tmp_path / "geometry" / "test-00000-of-00001.parquet").unlink()
  with pytest.raises(fetch.FetchError, match="no geometry/test-\\*.parquet"):
    list(fetch.convert_math([tmp_path], "math/test.jsonl"))


def test_math500_from_prm800k_or_the_hub(tmp_path):
  src = tmp_path / "test.jsonl"
  row = {"problem": "p", "solution": "s \\boxed{3}", "answer": "3", "subject": "Algebra", "level": 2,
         "unique_id": "test/algebra/7.json"}
  src.write_text(json.dumps(row) + "\n")
  (line,) = fetch.convert_math500([src], "math/math500.jsonl")
  assert line == json.dumps({"id": "test/algebra/7.json", "problem": "p", "solution": "s \\boxed{3}", "answer": "3",
                             "subject": "Algebra", "level": 2})


def test_bad_upstream_records_name_the_file_and_line(tmp_path):
  src = tmp_path / "test.jsonl"
  src.write_text('{"question": "q", "answer": "a"}\n{"question": "q"\n')
  with pytest.raises(ValueError, match=f"{src}:2: invalid JSON"):
    list(fetch.convert_gsm8k([src], "gsm8k/test.jsonl"))
  src.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
  with pytest.raises(fetch.FetchError, match=f"{src}:2: missing field\\(s\\) \\['answer'\\]"):
    list(fetch.convert_gsm8k([src], "gsm8k/test.jsonl"))
  src.write_text('[1, 2]\n')
  with pytest.raises(ValueError, match=f"{src}:1: expected a JSON object, got array"):
    list(fetch.convert_jsonl([src], "sat/test.jsonl"))
  tar = tmp_path / "MATH.tar"
  _write_math_tar(tar, {"MATH/train/algebra/5.json": {"problem": "p", "level": "Level 1", "type": "Algebra"}})
  with pytest.raises(fetch.FetchError, match="MATH/train/algebra/5.json: missing field\\(s\\) \\['solution'\\]"):
    list(fetch.convert_math([tar], "math/train.jsonl"))
  (tmp_path / "broken.tar").write_bytes(b"not a tar")
  with pytest.raises(fetch.FetchError, match="not a readable tar file"):
    list(fetch.convert_math([tmp_path / "broken.tar"], "math/train.jsonl"))


# ---------------------------------------------------------------------------------------------------------------------
# The command, end to end, and where dsmath then reads from.

def _upstream_folder(root: Path) -> Path:
  """Upstream copies as `--list` places them: GSM8K as the Hub's parquet, MATH.tar, MATH-500 from the Hub."""
  (root / "gsm8k" / "main").mkdir(parents=True)
  for split, n in (("train", 3), ("test", 2)):
    rows = [{"question": f"{split} question {i}?", "answer": f"so\n#### {i}"} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), root / "gsm8k" / "main" / f"{split}-00000-of-00001.parquet")
  _write_math_tar(root / "MATH.tar", MATH_PROBLEMS)
  (root / "MATH-500").mkdir()
  (root / "MATH-500" / "test.jsonl").write_text(json.dumps(
      {"problem": "p", "solution": "\\boxed{2}", "answer": "2", "subject": "Algebra", "level": 1,
       "unique_id": "test/algebra/1.json"}) + "\n")
  return root


def test_fetch_command_from_local_copies_writes_a_data_folder_dsmath_reads(tmp_path):
  cache = tmp_path / "cache"
  proc = subprocess.run([sys.executable, "-m", "dsmath.data.fetch", "--from", str(_upstream_folder(tmp_path / "up")),
                         "--cache", str(cache), "--only", "gsm8k,math,math500"], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  manifest = json.loads((cache / paths.FETCH_MANIFEST).read_text())
  assert sorted(manifest["datasets"]) == ["gsm8k", "math", "math500"]
  assert manifest["datasets"]["math"]["files"]["math/train.jsonl"]["records"] == 5
  assert manifest["datasets"]["math"]["license"] == "MIT" and not (cache / ".downloads").exists()
  # the cache is the benchmark folder for a clone without ../shared/data and without $DSMATH_SHARED_DATA ...
  assert paths.find_data_dir({"DSMATH_DATA_CACHE": str(cache)}, tmp_path / "clone") == (
      cache, "fetched by python -m dsmath.data.fetch")
  # ... and the loaders read it as they read ../shared/data
  assert [r.answer for r in benchmarks.load_gsm8k("train", data_dir=cache)] == ["0", "1", "2"]
  assert [r.id for r in benchmarks.load_math("test", data_dir=cache)] == ["test/algebra/1.json",
                                                                        "test/number_theory/4.json"]
  assert benchmarks.load_math500(data_dir=cache)[0].answer == "2"
  with pytest.raises(FileNotFoundError, match="python -m dsmath.data.fetch --only <name>"):
    benchmarks.load_cmath(data_dir=cache)  # not fetched: the error says how to get it


def test_pinned_upstream_files_are_the_shared_data_bytes(tmp_path):
  # The DeepSeekMath sets, GSM8K's JSONL and DCLM are pinned by sha256: the copies in the benchmark folder are those
  # bytes, so `--from` on them passes the pins and writes the very same files.
  data = paths.shared_data_dir()
  up = tmp_path / "up"
  names = ["gsm8k", "cmath", "mgsm_zh", "sat", "ocw", "mmlu_stem", "gaokao", "web"]
  for name in names:
    for out in fetch.DATASETS[name].outputs:
      local = up / out.upstream[0].local
      local.parent.mkdir(parents=True, exist_ok=True)
      local.write_bytes((data / out.path).read_bytes())
  fetch.fetch(names, tmp_path / "cache", up)
  for name in names:
    for out in fetch.DATASETS[name].outputs:
      assert (tmp_path / "cache" / out.path).read_bytes() == (data / out.path).read_bytes(), out.path
  (up / fetch.DATASETS["sat"].outputs[0].upstream[0].local).write_text('{"id": "0"}\n')
  with pytest.raises(fetch.FetchError, match="is not the pinned 96720a1d"):
    fetch.fetch(["sat"], tmp_path / "cache", up)


def test_without_network_the_fetch_says_what_to_do(tmp_path):
  # The guard makes every download fail as it fails without network.
  with pytest.raises(fetch.FetchError) as e:
    fetch.fetch(["sat"], tmp_path / "cache")
  msg = str(e.value)
  assert fetch.DATASETS["sat"].outputs[0].upstream[0].url in msg and "network access in a test" in msg
  assert "python -m dsmath.data.fetch --from DIR" in msg
  assert not (tmp_path / "cache" / paths.FETCH_MANIFEST).exists() and not (tmp_path / "cache" / ".downloads").exists()
  with pytest.raises(fetch.FetchError, match="unknown dataset"):
    fetch.fetch(["gsm9k"], tmp_path / "cache")


def test_where_data_comes_from(tmp_path):
  clone, cache = tmp_path / "clone", tmp_path / "cache"
  clone.mkdir()
  # nothing: the error names the command that fixes it
  with pytest.raises(paths.DataNotFound, match="Run `python -m dsmath.data.fetch`.*--from DIR"):
    paths.find_data_dir({"DSMATH_DATA_CACHE": str(cache)}, clone)
  # but the toy recipe's `toy:` paths fall back to the shipped subset
  assert paths.data_source({"DSMATH_DATA_CACHE": str(cache)}, clone)[0] == paths.TOY_DATA_DIR
  cache.mkdir()
  (cache / paths.FETCH_MANIFEST).write_text("{}")
  assert paths.find_data_dir({"DSMATH_DATA_CACHE": str(cache)}, clone)[0] == cache
  (tmp_path / "shared" / "data").mkdir(parents=True)  # ../shared/data beside the clone wins over the cache
  assert paths.find_data_dir({"DSMATH_DATA_CACHE": str(cache)}, clone) == (tmp_path / "shared" / "data",
                                                                          "../shared/data")
  other = tmp_path / "mine"
  other.mkdir()
  assert paths.find_data_dir({"DSMATH_SHARED_DATA": str(other)}, clone)[0] == other  # and the variable over both
  with pytest.raises(paths.DataNotFound, match="DSMATH_SHARED_DATA=.*missing is not a directory"):
    paths.data_source({"DSMATH_SHARED_DATA": str(tmp_path / "missing")}, clone)  # set but wrong: no quiet fallback
  assert paths.data_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "dsmath" / "data"


# ---------------------------------------------------------------------------------------------------------------------
# The toy subset shipped with the package.

def test_toy_subset_is_the_documented_subset_of_the_full_data():
  data = paths.shared_data_dir()
  total = 0
  for rel, rule in fetch.TOY_SUBSET.items():
    shipped = _lines(paths.TOY_DATA_DIR / rel)
    assert shipped == fetch.toy_subset_lines(rule, _lines(data / rel)), rel
    total += (paths.TOY_DATA_DIR / rel).stat().st_size
  assert sorted(str(p.relative_to(paths.TOY_DATA_DIR)) for p in paths.TOY_DATA_DIR.rglob("*.jsonl")) == sorted(
      fetch.TOY_SUBSET)
  assert total < 2_500_000


def test_toy_subset_is_enough_for_the_toy_crawl(tmp_path):
  # What the recipe's corpus stage does with it when there is no benchmark folder: the toy crawl and the
  # decontamination index (the test files here are its only benchmarks).
  manifest = toy.build_toy_crawl(paths.TOY_DATA_DIR, str(tmp_path), toy.ToyParams())
  assert manifest["math_pages"] == 220 + 220 + 2 * 40 + 4 + 2 and len(manifest["planted"]) == 6
  index = decontam.build_index(paths.TOY_DATA_DIR, 10)
  assert index.files == ("gsm8k/test.jsonl", "math/test.jsonl") and len(index.hashes) > 10_000
  planted = manifest["planted"][0]
  assert decontam.decontaminate_text(planted["passage"], index, decontam.TokenHasher())[0] is None


def test_toy_paths_read_the_benchmark_folder_when_there_is_one():
  assert resolve_path("toy:gsm8k/train.jsonl") == str(paths.data_source()[0] / "gsm8k" / "train.jsonl")
  assert resolve_path("shared:gsm8k/train.jsonl") == str(paths.shared_data_dir() / "gsm8k" / "train.jsonl")


def test_the_toy_recipe_reads_no_benchmark_folder_of_its_own():
  # README's first command must run from a bare clone: every data path of configs/toy.py is a `toy:` path, the
  # generated sources or another stage's run, never `shared:` (which needs the benchmark folder).
  from configs import toy as toy_recipe

  def strings(node):
    if isinstance(node, dict):
      return [s for v in node.values() for s in strings(v)]
    if isinstance(node, (list, tuple)):
      return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []
  values = strings(toy_recipe.get_config().to_dict())
  assert not [v for v in values if v.startswith("shared:")]
  assert toy_recipe.get_config().stages.corpus.data_dir == "toy:"
  assert "toy:web/dclm_*_data.jsonl" in values


def test_a_run_without_its_data_stops_with_what_to_do(tmp_path):
  env = {**os.environ, "DSMATH_SHARED_DATA": str(tmp_path / "missing")}
  proc = subprocess.run([sys.executable, "-m", "experiments.run", "--config", "configs/corpus_toy.py", "--workdir",
                         str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=paths.REPO_ROOT)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(f"error: DSMATH_SHARED_DATA={tmp_path / 'missing'} is not")
  assert "python -m dsmath.data.fetch" in proc.stderr
