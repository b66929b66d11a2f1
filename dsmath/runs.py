"""A run directory is an artifact: `run.json` beside its checkpoints says what the run holds, and `load_run` reads it.

Every stage that leaves a model (pretrain, sft, rl, HF import) writes `<run>/run.json` once, atomically, when it
finishes:
  format       RUN_FORMAT (a layout version; an older or missing file gets a clear error)
  job          the stage's config.job
  model        the full ModelConfig of the params in checkpoints/ (no later stage repeats it), its architecture
               switches included
  family       the model's HF architecture family (llama | qwen2 | qwen3: `ModelConfig.family`, for readers;
               load_run derives it from the model again)
  tokenizer    {kind, path, ...} as dsmath.data.load_tokenizer takes it (absolute paths)
  step         the checkpoint step the run ended at
  config       the stage's resolved config
  parents      run directories this one started from (init_from, a reward model run, ...)
  provenance   code commit, dirty tree, package versions, machine (`provenance()`)
`load_run(path) -> Run` accepts the run directory, its checkpoints/ directory or one step directory, and serves
init_from, evaluation, held-out loss, RL and HF export.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import subprocess
from importlib import metadata
from typing import Any, Mapping, Optional

from etils import epath

from dsmath import paths
from dsmath.config import resolve, to_dict
from dsmath.files import write_json_atomic
from dsmath.model import ModelConfig

RUN_FILE = "run.json"
RUN_FORMAT = 1
CHECKPOINTS = "checkpoints"
PARAMS = "params"  # the item of a checkpoint step directory holding the model params (orbax StandardSave)
# Packages whose versions decide numbers (recorded in every run and report).
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "sentencepiece", "math-verify",
             "ml_collections", "apache-beam", "fasttext-numpy2-wheel")


@dataclasses.dataclass(frozen=True)
class Run:
  """What a finished run directory holds."""
  path: str
  job: str
  model: ModelConfig
  tokenizer: Mapping[str, str]
  step: int
  config: Mapping[str, Any]
  parents: tuple[str, ...]
  provenance: Mapping[str, Any]

  @property
  def family(self) -> str:
    """The model's HF architecture family (llama | qwen2 | qwen3)."""
    return self.model.family

  @property
  def checkpoint(self) -> str:
    """The step directory of the run's final checkpoint."""
    return os.path.join(self.path, CHECKPOINTS, str(self.step))

  def load_tokenizer(self):
    from dsmath.data.tokenizer import load_tokenizer
    return load_tokenizer(dict(self.tokenizer))

  def load_params(self, target: Optional[Any] = None) -> dict:
    """The policy params of the final checkpoint; `target`: ShapeDtypeStructs with shardings (default: the model's
    abstract params, unsharded)."""
    from dsmath import model
    return read_params(self.checkpoint, model.abstract_params(self.model) if target is None else target)


def read_params(step_dir, target: Any) -> dict:
  """The params item of one checkpoint step directory, restored to `target`'s shapes, dtypes and shardings."""
  import orbax.checkpoint as ocp
  with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
    return ckptr.restore(epath.Path(step_dir) / PARAMS, ocp.args.StandardRestore(target))


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
  """Where numbers came from: the dsmath commit and whether the tree had changes, package versions, the machine, the
  data folder (dsmath.paths.data_source: the benchmark folder, or the toy subset shipped with the package)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def git(*args) -> str:
    try:
      return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10,
                            check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
      return ""

  commit = git("rev-parse", "HEAD")
  status = git("status", "--porcelain", "--untracked-files=no") if commit else ""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  import jax
  try:
    data = paths.data_source()[1]  # which folder, not its path (reports are committed; paths are this machine's)
  except paths.DataNotFound:
    data = "none ($DSMATH_SHARED_DATA names no folder)"
  return {
      "commit": commit or "unknown (not a git checkout)", "dirty": bool(status), "packages": versions,
      "python": platform.python_version(), "data": data,
      "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
                  "backend": jax.default_backend(), "devices": jax.device_count(),
                  "device_kind": jax.devices()[0].device_kind, "processes": jax.process_count()},
  }


def write_run(workdir, *, job: str, model: ModelConfig, tokenizer: Mapping[str, str], step: int, config: Any,
              parents=()) -> Run:
  """Writes <workdir>/run.json (atomically; process 0 only) and returns the Run it describes."""
  import jax
  from dsmath.data.sources import resolve_path
  tok = dict(tokenizer)
  for key in ("path", "chat_template"):
    if tok.get(key) and "://" not in tok[key]:
      tok[key] = os.path.abspath(resolve_path(tok[key]))  # `shared:` paths too: later stages run elsewhere
  run = Run(path=os.fspath(workdir), job=job, model=model, tokenizer=tok, step=int(step), config=to_dict(config),
            parents=tuple(os.fspath(p) for p in parents if p), provenance=provenance())
  if jax.process_index() == 0:
    write_json_atomic(epath.Path(workdir) / RUN_FILE, {
        "format": RUN_FORMAT, "job": run.job, "model": dataclasses.asdict(run.model), "family": run.family,
        "tokenizer": run.tokenizer,
        "step": run.step, "config": run.config, "parents": list(run.parents), "provenance": run.provenance})
  return run


def run_dir_of(path) -> epath.Path:
  """The run directory of `path`: itself, or the run above a checkpoints/ directory or one step directory."""
  path = epath.Path(path)
  if "://" not in os.fspath(path):  # orbax restores from absolute local paths only (init_from may be relative)
    path = epath.Path(os.path.abspath(os.fspath(path)))
  for candidate in (path, path.parent, path.parent.parent):
    if (candidate / RUN_FILE).exists():
      return candidate
  raise FileNotFoundError(
      f"{path} is not a finished dsmath run: no {RUN_FILE} in it or above it. A run writes {RUN_FILE} when its stage "
      f"finishes (re-run the stage's command to finish or resume it); runs made before {RUN_FILE} existed "
      f"(format {RUN_FORMAT}) must be re-run, or converted by writing {RUN_FILE} with dsmath.runs.write_run.")


def load_run(path) -> Run:
  """The Run of a run directory, its checkpoints/ directory or one of its step directories (then `step` is that
  step). A missing or older-format run.json gets a clear error saying what is missing."""
  root = run_dir_of(path)
  file = root / RUN_FILE
  try:
    data = json.loads(file.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{file} is not valid JSON ({e}); the run was not finished cleanly: re-run its stage") from None
  if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
    found = data.get("format") if isinstance(data, dict) else None
    raise ValueError(f"{file} has format {found!r}, this dsmath reads format {RUN_FORMAT}: re-run the stage")
  missing = sorted({"job", "model", "tokenizer", "step", "config", "parents", "provenance"} - set(data))
  if missing:
    raise ValueError(f"{file} lacks {missing}: re-run the stage that made it")
  model = resolve(ModelConfig, data["model"], f"{file}: model")  # a damaged or foreign file fails naming the key
  step = int(data["step"])
  path = epath.Path(path)
  if path.name.isdigit() and path.parent.name == CHECKPOINTS:
    step = int(path.name)  # one step directory chosen explicitly
  if not (root / CHECKPOINTS / str(step)).exists():
    raise FileNotFoundError(f"{file} names checkpoint step {step}, but {root / CHECKPOINTS / str(step)} does not exist")
  return Run(path=os.fspath(root), job=data["job"], model=model, tokenizer=data["tokenizer"], step=step,
             config=data["config"], parents=tuple(data["parents"]), provenance=data["provenance"])


def provenance_markdown(prov: Optional[Mapping[str, Any]] = None) -> list[str]:
  """A report's "Provenance" section as Markdown lines: `prov` (default: this process's `provenance()`)."""
  p = prov or provenance()
  m = p["machine"]
  return ["", "## Provenance", "",
          f"- code: `{p['commit']}`" + (" with uncommitted changes (dirty tree)" if p["dirty"] else " (clean tree)"),
          f"- machine: {m['platform']} ({m['processor']}, {m['cpu_count']} CPUs), {m['devices']} x {m['device_kind']} "
          f"on {m['backend']}, {m['processes']} process(es)",
          f"- Python {p['python']}; " + ", ".join(f"{k} {v}" for k, v in sorted(p["packages"].items()))] + (
              [f"- data: {p['data']}"] if "data" in p else [])
