"""Where the project's data lives.

The benchmark folder (gsm8k/, math/, ... as JSONL; `shared_data_dir`) is the first of:
  1. $DSMATH_SHARED_DATA (it must exist when set),
  2. ../shared/data beside the repository root,
  3. the copy `python -m dsmath.data.fetch` writes from the public sources: $DSMATH_DATA_CACHE, else
     $XDG_CACHE_HOME/dsmath/data (~/.cache/dsmath/data), used once its manifest (fetched.json) exists.
Without any of them, `shared_data_dir` raises DataNotFound saying which command fetches the data. The toy recipe
reads through `toy_data_dir`: the benchmark folder when there is one, else the small subset shipped with the package
(dsmath/data/toy_data; its README says what it holds and where from), so a bare clone runs it.
"""
import os
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
TOY_DATA_DIR = Path(__file__).resolve().parent / "data" / "toy_data"
FETCH_COMMAND = "python -m dsmath.data.fetch"
FETCH_MANIFEST = "fetched.json"


class DataNotFound(FileNotFoundError):
  """No benchmark folder; the message says how to get one."""


def data_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
  """Where `python -m dsmath.data.fetch` writes: $DSMATH_DATA_CACHE, else $XDG_CACHE_HOME (~/.cache)/dsmath/data."""
  if environ.get("DSMATH_DATA_CACHE"):
    return Path(environ["DSMATH_DATA_CACHE"]).expanduser()
  return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "dsmath" / "data"


def find_data_dir(environ: Mapping[str, str] = os.environ, repo_root: Path = REPO_ROOT) -> tuple[Path, str]:
  """(benchmark folder, which of the three it is) for this environment and repository root (module docstring)."""
  if environ.get("DSMATH_SHARED_DATA"):
    path = Path(environ["DSMATH_SHARED_DATA"]).expanduser()
    if not path.is_dir():
      raise DataNotFound(f"DSMATH_SHARED_DATA={path} is not a directory (set it to the folder holding gsm8k/, math/, "
                         f"..., or unset it to use ../shared/data or the copy `{FETCH_COMMAND}` makes)")
    return path, "$DSMATH_SHARED_DATA"
  sibling = repo_root.parent / "shared" / "data"
  if sibling.is_dir():
    return sibling, "../shared/data"
  cache = data_cache_dir(environ)
  if (cache / FETCH_MANIFEST).is_file():
    return cache, f"fetched by {FETCH_COMMAND}"
  raise DataNotFound(
      f"benchmark data not found: no $DSMATH_SHARED_DATA, no {sibling} and no fetched copy in {cache}. Run "
      f"`{FETCH_COMMAND}` to download GSM8K, MATH, MATH-500, the DeepSeekMath evaluation sets and the DCLM web "
      f"texts from their public sources into {cache} (21 MB of JSONL; `{FETCH_COMMAND} --list` says what and from "
      f"where; without network, `{FETCH_COMMAND} --from DIR` converts copies you downloaded elsewhere), or set "
      f"DSMATH_SHARED_DATA to a folder holding them. The toy recipe (`python -m experiments.run`) needs none of it.")


def shared_data_dir() -> Path:
  """The benchmark folder (module docstring); raises DataNotFound, saying what to run, if there is none."""
  return find_data_dir()[0]


def toy_data_dir() -> Path:
  """The benchmark folder when there is one, else the toy subset shipped with the package."""
  return data_source()[0]


def data_source(environ: Mapping[str, str] = os.environ, repo_root: Path = REPO_ROOT) -> tuple[Path, str]:
  """(the folder `toy:` paths read, which one it is): the benchmark folder, else the shipped toy subset."""
  try:
    return find_data_dir(environ, repo_root)
  except DataNotFound:
    if environ.get("DSMATH_SHARED_DATA"):
      raise  # set but wrong: say so rather than quietly read the subset
    return TOY_DATA_DIR, "toy subset shipped with dsmath (dsmath/data/toy_data)"


SCHEMES = {"shared:": shared_data_dir, "toy:": toy_data_dir}


def resolve_data_path(path: str | os.PathLike) -> str:
  """`shared:<rel>` -> <benchmark folder>/<rel>, `toy:<rel>` -> <that folder, else the shipped toy subset>/<rel>;
  other paths unchanged (user `~` expanded)."""
  path = str(path)
  for scheme, folder in SCHEMES.items():
    if path.startswith(scheme):
      return str(folder() / path[len(scheme):].lstrip("/"))
  return os.path.expanduser(path)
