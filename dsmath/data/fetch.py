"""The benchmark files from their public sources, converted to the JSONL layout of ../shared/data (its README).

  python -m dsmath.data.fetch                      # every dataset, into the cache dsmath.paths.data_cache_dir()
  python -m dsmath.data.fetch --only gsm8k,math    # some of them (names: --list)
  python -m dsmath.data.fetch --list               # each dataset: files, license, where it comes from
  python -m dsmath.data.fetch --from DIR           # no network: convert upstream copies you put in DIR (--list says
                                                   # where each goes: DIR/<repository>/<path>, DIR/MATH.tar, ...)
  python -m dsmath.data.fetch --toy-subset OUT     # (maintainers) rebuild dsmath/data/toy_data from the full data

The cache becomes the benchmark folder once its manifest (fetched.json: per file its records, sha256 and source) is
written, unless $DSMATH_SHARED_DATA or ../shared/data exists (dsmath.paths). Upstream files are downloaded from
commits pinned below and checked against their sha256 where it is known; the DeepSeekMath evaluation sets, GSM8K and
the DCLM texts are then the very bytes of ../shared/data. Each output names alternatives, tried in order: MATH comes
from the authors' MATH.tar (per-problem JSON files, ids `<split>/<subject>/<n>.json`), else its Hugging Face parquet
copy (EleutherAI/hendrycks_math, which lost the file names: ids `<split>/<subject>/hf-<row>`); GSM8K from its
repository's JSONL, else the parquet of openai/gsm8k. Converters are pure functions of the downloaded files (tested on
fixture files in the upstream shapes); a malformed upstream record fails naming its file and line.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import hashlib
import json
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Iterator

from dsmath.data.benchmarks import jsonl_objects
from dsmath.files import write_atomic, write_json_atomic
from dsmath.paths import FETCH_COMMAND, FETCH_MANIFEST, data_cache_dir

_GITHUB = "https://raw.githubusercontent.com"
_DEEPSEEK = f"{_GITHUB}/deepseek-ai/DeepSeek-Math/b8b0f8ce093d80bf8e9a641e44142f06d092c305/evaluation/datasets"
_GSM8K = f"{_GITHUB}/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data"
_DCLM = f"{_GITHUB}/mlfoundations/dclm/361714bdd60bb9b7f4b2d8354cebbf0dec0c329e/data"
_PRM800K = ("https://media.githubusercontent.com/media/openai/prm800k/7ecc794703b2877f63226f2477a49b34f9b25163/"
            "prm800k/math_splits/test.jsonl")  # a Git LFS file: media.githubusercontent.com serves its content
_MATH_TAR = "https://people.eecs.berkeley.edu/~hendrycks/MATH.tar"
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


class FetchError(ValueError):
  """A dataset could not be fetched or converted; the message says what to do (a malformed upstream record raises
  ValueError naming its file and line, as the benchmark loaders do)."""


@dataclasses.dataclass(frozen=True)
class Upstream:
  """One upstream file or folder. url: https://..., hf://datasets/<repo>@<revision>/<glob> (Hugging Face Hub), or ""
  (only in a local copy); local: where it sits under a `--from` folder; sha256: the pinned content hash ("" unknown)."""
  url: str
  local: str
  sha256: str = ""


@dataclasses.dataclass(frozen=True)
class Output:
  """One file of the data folder: its relative path, its converter (CONVERTERS) and its upstream alternatives."""
  path: str
  convert: str
  upstream: tuple[Upstream, ...]


@dataclasses.dataclass(frozen=True)
class Dataset:
  license: str
  source: str
  outputs: tuple[Output, ...]


def _deepseek(out: str, rel: str, sha256: str) -> Output:
  return Output(out, "jsonl", (Upstream(f"{_DEEPSEEK}/{rel}", f"DeepSeek-Math/evaluation/datasets/{rel}", sha256),))


DATASETS: dict[str, Dataset] = {
    "gsm8k": Dataset("MIT", "github.com/openai/grade-school-math (Cobbe et al. 2021)", tuple(
        Output(f"gsm8k/{split}.jsonl", "gsm8k", (
            Upstream(f"{_GSM8K}/{split}.jsonl", f"grade-school-math/grade_school_math/data/{split}.jsonl", sha),
            Upstream(f"hf://datasets/openai/gsm8k@main/main/{split}-*.parquet", f"gsm8k/main/{split}-*.parquet")))
        for split, sha in (("train", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
                           ("test", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14")))),
    "math": Dataset("MIT", "github.com/hendrycks/math (Hendrycks et al. 2021): MATH.tar", tuple(
        Output(f"math/{split}.jsonl", "math", (
            Upstream(_MATH_TAR, "MATH.tar"), Upstream("", "MATH"),
            Upstream("hf://datasets/EleutherAI/hendrycks_math@main/*/*.parquet", "hendrycks_math")))
        for split in ("train", "test"))),
    "math500": Dataset("MIT", "github.com/openai/prm800k math_splits/test.jsonl (Lightman et al. 2023)", (
        Output("math/math500.jsonl", "math500", (
            Upstream(_PRM800K, "prm800k/prm800k/math_splits/test.jsonl",
                     "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"),
            Upstream("hf://datasets/HuggingFaceH4/MATH-500@main/test.jsonl", "MATH-500/test.jsonl"))),)),
    "cmath": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets", (
        _deepseek("cmath/test.jsonl", "cmath/test.jsonl",
                  "cabe17c127c3227912b3384f4755e180f3aa0d9e5865677e7e5e223439bf15eb"),)),
    "mgsm_zh": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets", (
        _deepseek("mgsm_zh/test.jsonl", "mgsm_zh/mgsm_zh.jsonl",
                  "165c3b6753e8a8786183c27b9af7b7590d54dca4d0136edadb24d684c95bb50d"),)),
    "sat": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets", (
        _deepseek("sat/test.jsonl", "sat/test.jsonl",
                  "96720a1dc496ea72f80db55250290cf9c48e95b657ac2183b7deb1dc4627351f"),)),
    "ocw": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets", (
        _deepseek("ocw/test.jsonl", "ocw/test.jsonl",
                  "095ba49696fcd401474a5014e2fae5e6b0b8ec1939d8dded0343fcbdb0bf1a9b"),)),
    "mmlu_stem": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets", (
        _deepseek("mmlu_stem/test.jsonl", "mmlu_stem/test.jsonl",
                  "1c918d1df6de635a0202c989705c34f19b0c4ad858cbdb27135cdfc7fd44f14a"),)),
    "gaokao": Dataset("MIT", "github.com/deepseek-ai/DeepSeek-Math evaluation/datasets (from AGIEval)", (
        _deepseek("gaokao_mathqa/test.jsonl", "agieval/gaokao-mathqa.jsonl",
                  "d246f12752d121289ef55cbf1bcf954243cefb65d110f71d09358e24065c808f"),
        _deepseek("gaokao_mathcloze/test.jsonl", "agieval/gaokao-mathcloze.jsonl",
                  "088675c147794970a3ed25c7147a3bbc59715d6813837d5f483f46dcb1b5008d"))),
    "web": Dataset("MIT (the repository); the page texts are Common Crawl's, under its terms of use",
                   "github.com/mlfoundations/dclm data/", tuple(
        Output(f"web/dclm_{kind}_data.jsonl", "jsonl", (Upstream(f"{_DCLM}/{kind}_data.jsonl",
                                                                 f"dclm/data/{kind}_data.jsonl", sha),))
        for kind, sha in (("agreement", "34ce66517d18cd29309554d8d90cae801ead1691ced321c575b21bbd3587206d"),
                          ("majority", "edd55bddc5bd4786b3cc07db4813bf99b79726a3759e8b6ac550e2e692b66ce7")))),
}


# ---------------------------------------------------------------------------------------------------------------------
# Converters: upstream file or folder -> the output's JSONL lines (JSON text, no newline).

def _dumps(record: dict) -> str:
  return json.dumps(record, ensure_ascii=False)


def _parquet_rows(paths: list[Path]) -> Iterator[tuple[str, dict]]:
  """(origin "file:row N", row) of every row of the parquet files, in file then row order."""
  import pyarrow.parquet as pq
  for path in paths:
    for i, row in enumerate(pq.read_table(path).to_pylist()):
      yield f"{path}:row {i}", row


def _need(row: dict, fields: tuple[str, ...], origin: str) -> None:
  missing = [f for f in fields if f not in row]
  if missing:
    raise FetchError(f"{origin}: missing field(s) {missing} (has {sorted(row)})")


def _expand(paths: list[Path], pattern: str) -> list[Path]:
  """The given files, and the files matching pattern under the given folders (recursively), sorted per folder."""
  return [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob(pattern)))]


def convert_jsonl(paths: list[Path], out: str) -> Iterator[str]:
  """JSONL files whose lines are already the output's (the DeepSeekMath sets, DCLM): checked, kept byte for byte."""
  for path in paths:
    for _, line, _ in jsonl_objects(path):
      yield line


def convert_gsm8k(paths: list[Path], out: str) -> Iterator[str]:
  """GSM8K {question, answer}: the repository's JSONL (kept byte for byte) or the Hub's parquet files."""
  for path in _expand(paths, "*.parquet"):
    if path.suffix == ".jsonl":
      for lineno, line, obj in jsonl_objects(path):
        _need(obj, ("question", "answer"), f"{path}:{lineno}")
        yield line
      continue
    for origin, row in _parquet_rows([path]):
      _need(row, ("question", "answer"), origin)
      yield _dumps({"question": row["question"], "answer": row["answer"]})


_MATH_FILE = re.compile(r"(?:^|/)(train|test)/([a-z_]+)/(\d+)\.json$")
_MATH_FIELDS = ("problem", "level", "type", "solution")


def _math_problem_files(path: Path) -> Iterator[tuple[str, bytes]]:
  """(member path, bytes) of every file in MATH.tar or in a folder holding its extracted contents."""
  if path.is_file():
    try:
      with tarfile.open(path) as tar:
        for member in tar:
          if member.isfile():
            yield member.name, tar.extractfile(member).read()
    except tarfile.TarError as e:
      raise FetchError(f"{path}: not a readable tar file ({e})") from e
    return
  for p in sorted(path.rglob("*.json")):
    yield p.relative_to(path).as_posix(), p.read_bytes()


def _math_from_parquet(parquets: list[Path], split: str) -> Iterator[str]:
  for subject in MATH_SUBJECTS:
    files = [f for f in parquets if f.parent.name == subject and f.name.startswith(f"{split}-")]
    if not files:
      raise FetchError(f"no {subject}/{split}-*.parquet among {sorted({str(f.parent.parent) for f in parquets})}")
    for i, (origin, row) in enumerate(_parquet_rows(files)):
      _need(row, _MATH_FIELDS, origin)
      yield _dumps({"id": f"{split}/{subject}/hf-{i}", **{k: row[k] for k in _MATH_FIELDS}})


def convert_math(paths: list[Path], out: str) -> Iterator[str]:
  """MATH {id, problem, level, type, solution} for the split the output names, ordered by subject, then problem number.

  From MATH.tar or its extracted folder (<split>/<subject>/<n>.json files: id `<split>/<subject>/<n>.json`), or from
  the Hub's parquet files (<subject>/<split>-*.parquet: id `<split>/<subject>/hf-<row>`, the files' names are lost)."""
  split = Path(out).stem
  parquets = [f for f in _expand(paths, "*.parquet") if f.suffix == ".parquet"]
  if parquets:
    yield from _math_from_parquet(parquets, split)
    return
  problems = []
  for path in paths:
    for name, data in _math_problem_files(path):
      m = _MATH_FILE.search(name)
      if m is None or m.group(1) != split:
        continue
      origin = f"{path}:{name}"
      try:
        row = json.loads(data.decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FetchError(f"{origin}: not a JSON file ({e})") from e
      if not isinstance(row, dict):
        raise FetchError(f"{origin}: a problem must be a JSON object")
      _need(row, _MATH_FIELDS, origin)
      problems.append(((m.group(2), int(m.group(3))), {"id": f"{split}/{m.group(2)}/{m.group(3)}.json",
                                                       **{k: row[k] for k in _MATH_FIELDS}}))
  if not problems:
    raise FetchError(f"{[str(p) for p in paths]}: no MATH {split}/<subject>/<n>.json problem in them")
  for _, record in sorted(problems, key=lambda p: p[0]):
    yield _dumps(record)


def convert_math500(paths: list[Path], out: str) -> Iterator[str]:
  """MATH-500 {id, problem, solution, answer, subject, level} from PRM800K's math_splits/test.jsonl or the Hub's
  HuggingFaceH4/MATH-500 test.jsonl (both name the MATH file as `unique_id`)."""
  for path in paths:
    for lineno, _, obj in jsonl_objects(path):
      _need(obj, ("unique_id", "problem", "solution", "answer", "subject", "level"), f"{path}:{lineno}")
      yield _dumps({"id": obj["unique_id"], **{k: obj[k] for k in ("problem", "solution", "answer", "subject",
                                                                   "level")}})


CONVERTERS: dict[str, Callable[[list[Path], str], Iterable[str]]] = {
    "jsonl": convert_jsonl, "gsm8k": convert_gsm8k, "math": convert_math, "math500": convert_math500}


# ---------------------------------------------------------------------------------------------------------------------
# Getting upstream files and writing the data folder.

def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _download(up: Upstream, staging: Path) -> list[Path]:
  """The upstream file (https://) or the files matching its pattern (hf://) on this machine. Raises whatever the
  network or the Hub raises."""
  folder = staging / hashlib.sha1(up.url.encode()).hexdigest()[:12]  # one per upstream: names like test.jsonl repeat
  if up.url.startswith("hf://"):
    from huggingface_hub import snapshot_download
    kind, owner, name_revision, pattern = up.url[len("hf://"):].split("/", 3)
    name, revision = name_revision.split("@")
    snapshot_download(f"{owner}/{name}", repo_type=kind.rstrip("s"), revision=revision, allow_patterns=[pattern],
                      local_dir=folder)
    return sorted(Path(p) for p in glob.glob(str(folder / pattern)))
  target = folder / Path(up.url).name
  if not target.exists():
    def write(tmp):
      with urllib.request.urlopen(up.url, timeout=60) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    write_atomic(target, write)
  return [target]


def fetch_output(output: Output, data_dir: Path, source_dir: Path | None, staging: Path) -> dict:
  """Converts the first upstream alternative that is there (under source_dir, or downloaded) into
  data_dir/output.path; returns its manifest entry. Raises FetchError saying what was tried and what to do."""
  tried = []
  for up in output.upstream:
    if source_dir is not None:
      paths = sorted(Path(p) for p in glob.glob(str(source_dir / up.local)))
      where = str(source_dir / up.local)
    elif up.url:
      where = up.url
      try:
        paths = _download(up, staging)
      except Exception as e:  # no network, an HTTP error, a Hub error: try the next alternative
        tried.append(f"{where}: {type(e).__name__}: {e}")
        continue
    else:
      continue  # a local-only alternative (MATH's extracted folder)
    if not paths:
      tried.append(f"{where}: not there")
      continue
    if up.sha256 and len(paths) == 1 and paths[0].is_file() and _sha256(paths[0]) != up.sha256:
      raise FetchError(f"{paths[0]}: sha256 {_sha256(paths[0])} is not the pinned {up.sha256} of {where}; the "
                       f"upstream file changed or the copy is damaged (delete it and fetch again)")
    lines = list(CONVERTERS[output.convert](paths, output.path))
    if not lines:
      raise FetchError(f"{where}: no records for {output.path}")

    def write(tmp):
      with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    target = data_dir / output.path
    write_atomic(target, write)
    return {"records": len(lines), "sha256": _sha256(target), "from": where}
  how = (f"put one of them there (`{FETCH_COMMAND} --list` shows where each goes)" if source_dir else
         f"on a machine without network, download one of them elsewhere, place it under a folder DIR as "
         f"`{FETCH_COMMAND} --list` shows and run `{FETCH_COMMAND} --from DIR`")
  raise FetchError(f"{output.path}: no upstream copy could be read ({'; '.join(tried)}); {how}")


def fetch(names: Iterable[str], data_dir: Path, source_dir: Path | None = None) -> dict:
  """Fetches the named datasets into data_dir and (re)writes its manifest, fetched.json; returns the manifest."""
  names = list(names)
  unknown = [n for n in names if n not in DATASETS]
  if unknown:
    raise FetchError(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
  data_dir.mkdir(parents=True, exist_ok=True)
  manifest_path = data_dir / FETCH_MANIFEST
  manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"datasets": {}}
  staging = data_dir / ".downloads"
  try:
    for name in names:
      ds = DATASETS[name]
      files = {o.path: fetch_output(o, data_dir, source_dir, staging) for o in ds.outputs}
      when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
      manifest["datasets"][name] = {"license": ds.license, "source": ds.source, "files": files, "fetched": when}
      write_json_atomic(manifest_path, manifest)  # after each dataset: an interrupted fetch keeps what it finished
      print(f"{name}: " + ", ".join(f"{p} ({f['records']} records)" for p, f in files.items()), flush=True)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return manifest


# ---------------------------------------------------------------------------------------------------------------------
# The toy subset shipped with the package (what the toy recipe reads without a benchmark folder).

# output file -> (slice start, stop, step) over its lines in the full data, or ("max_chars", n): lines of <= n chars
TOY_SUBSET: dict[str, tuple] = {
    "gsm8k/train.jsonl": ("slice", 0, 400, 1),
    "gsm8k/test.jsonl": ("slice", 0, 100, 1),
    "math/train.jsonl": ("slice", 0, None, 10),
    "math/test.jsonl": ("slice", 0, None, 50),
    "web/dclm_agreement_data.jsonl": ("max_chars", 4000),
    "web/dclm_majority_data.jsonl": ("max_chars", 4000),
}


def toy_subset_lines(rule: tuple, lines: list[str]) -> list[str]:
  """The lines of one file that TOY_SUBSET keeps (each line without its newline)."""
  if rule[0] == "slice":
    return lines[slice(*rule[1:])]
  return [line for line in lines if len(line) <= rule[1]]


def write_toy_subset(data_dir: Path, out_dir: Path) -> None:
  """Rebuilds the shipped toy subset (TOY_SUBSET) from a full data folder."""
  for rel, rule in TOY_SUBSET.items():
    # split("\n"), not splitlines(): a JSON line may hold U+2028, which splitlines() would cut
    lines = (data_dir / rel).read_text(encoding="utf-8").rstrip("\n").split("\n")
    kept = toy_subset_lines(rule, lines)

    def write(tmp, kept=kept):
      with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in kept)
    write_atomic(out_dir / rel, write)
    print(f"{rel}: {len(kept)} of {len(lines)} lines")


def _listing() -> str:
  out = []
  for name, ds in DATASETS.items():
    out.append(f"{name}: {ds.source}; license {ds.license}")
    for o in ds.outputs:
      out.append(f"  {o.path} <- " + " | ".join(f"{u.url or '(local only)'} [--from: {u.local}]" for u in o.upstream))
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog=FETCH_COMMAND, description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--only", default="", help=f"comma-separated datasets (default: all of {', '.join(DATASETS)})")
  p.add_argument("--cache", default="", help="the folder to write (default: dsmath.paths.data_cache_dir())")
  p.add_argument("--from", dest="source_dir", default="", help="convert upstream copies under this folder, no network")
  p.add_argument("--list", action="store_true", help="list the datasets, their licenses and upstream files")
  p.add_argument("--toy-subset", default="", help="write the toy subset built from the benchmark folder to this folder")
  args = p.parse_args(argv)
  if args.list:
    print(_listing())
    return 0
  if args.toy_subset:
    from dsmath.paths import shared_data_dir
    write_toy_subset(shared_data_dir(), Path(args.toy_subset))
    return 0
  cache = Path(args.cache).expanduser() if args.cache else data_cache_dir()
  names = [n.strip() for n in args.only.split(",") if n.strip()] or list(DATASETS)
  try:
    fetch(names, cache, Path(args.source_dir).expanduser() if args.source_dir else None)
  except ValueError as e:  # FetchError, or a malformed upstream record
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {cache}; dsmath reads it when neither $DSMATH_SHARED_DATA nor ../shared/data exists")
  return 0


if __name__ == "__main__":
  sys.exit(main())
