"""The `sources` stage: writes generated training sources as JSONL files the Grain pipeline reads.

  <workdir>/synthetic_train.jsonl   the synthetic task's train split ({question, solution, answer, text}); the test
                                    split is never written here (evaluation regenerates it, disjoint by construction)
  <workdir>/code.jsonl              Python standard-library sources (the toy stand-in for GitHub code)
The config is SourcesStageConfig, resolved once by `run`.
"""
import dataclasses
from pathlib import Path
from typing import Literal

import ml_collections

from dsmath import config as config_lib
from dsmath.data import code_text, synthetic
from dsmath.files import write_jsonl_atomic


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
  num_train: int = 2000
  test_fraction: float = 0.2
  difficulty: synthetic.Difficulty = config_lib.sub(synthetic.Difficulty)


@dataclasses.dataclass(frozen=True)
class CodeSource:
  max_chars: int = 1_000_000


@dataclasses.dataclass(frozen=True)
class SourcesStageConfig:
  job: Literal["sources"] = "sources"
  workdir: str = ""
  seed: int = 0
  synthetic: SyntheticSource = config_lib.sub(SyntheticSource)
  code: CodeSource = config_lib.sub(CodeSource)


def default_config() -> ml_collections.ConfigDict:
  return config_lib.config_dict(SourcesStageConfig)


def run(config, workdir: str) -> dict:
  cfg = config_lib.resolve(SourcesStageConfig, config)
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  s = cfg.synthetic
  problems = synthetic.make_split("train", s.num_train, cfg.seed, s.difficulty, s.test_fraction)
  rows = write_jsonl_atomic(out / "synthetic_train.jsonl", ({**p.as_dict(), "text": p.prompt + p.solution}
                                                             for p in problems))
  manifest = code_text.write_code_jsonl(out / "code.jsonl", max_chars=cfg.code.max_chars, seed=cfg.seed)
  return {"synthetic_train": {"path": str(out / "synthetic_train.jsonl"), "problems": rows},
          "code": {"path": str(out / "code.jsonl"), "files": manifest["num_files"], "chars": manifest["num_chars"]}}
