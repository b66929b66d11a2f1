"""The `sources` stage: writes generated training sources as JSONL files the Grain pipeline reads.

  <workdir>/synthetic_train.jsonl   the synthetic task's train split ({question, solution, answer, text}); the test
                                    split is never written here (evaluation regenerates it, disjoint by construction)
  <workdir>/synthetic_sft.jsonl     the SFT set (synthetic.num_sft problems of the train split): {question, solution as
                                    the teacher wrote it, answer (the right one), teacher_answer}
  <workdir>/code.jsonl              Python standard-library sources (the toy stand-in for GitHub code)
The config is SourcesStageConfig, resolved once by `run`.
"""
import dataclasses
import random
from pathlib import Path
from typing import Literal

import ml_collections

from dsmath import config as config_lib
from dsmath.data import code_text, synthetic
from dsmath.files import write_jsonl_atomic


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
  num_train: int = 2000  # problems with their right solutions, for pre-training (synthetic_train.jsonl)
  num_sft: int = 0  # problems of the SFT set, solutions written by `teacher` (synthetic_sft.jsonl); 0 = none
  test_fraction: float = 0.2
  validation_fraction: float = 0.0
  difficulty: synthetic.Difficulty = config_lib.sub(synthetic.Difficulty)
  teacher: synthetic.Teacher = config_lib.sub(synthetic.Teacher)


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
  problems = synthetic.make_split("train", s.num_train, cfg.seed, s.difficulty, s.test_fraction,
                                  validation_fraction=s.validation_fraction)
  rows = write_jsonl_atomic(out / "synthetic_train.jsonl", ({**p.as_dict(), "text": p.prompt + p.solution}
                                                             for p in problems))
  summary = {}
  if s.num_sft:
    # The SFT set: other problems of the train split (a seed of their own), solutions as the teacher writes them.
    sft = synthetic.make_split("train", s.num_sft, cfg.seed + 1, s.difficulty, s.test_fraction,
                               validation_fraction=s.validation_fraction)
    rng = random.Random(f"teacher-{cfg.seed}")
    written = [synthetic.teacher_solution(p, s.teacher, rng) for p in sft]
    n = write_jsonl_atomic(out / "synthetic_sft.jsonl", (
        {"question": p.question, "solution": w, "answer": p.answer, "teacher_answer": synthetic.boxed_answer(w)}
        for p, w in zip(sft, written)))
    right = sum(synthetic.boxed_answer(w) == p.answer for p, w in zip(sft, written))
    summary["synthetic_sft"] = {"path": str(out / "synthetic_sft.jsonl"), "problems": n, "teacher_slip": s.teacher.slip,
                                "teacher_answers_right": right / max(n, 1)}
  manifest = code_text.write_code_jsonl(out / "code.jsonl", max_chars=cfg.code.max_chars, seed=cfg.seed)
  return {**summary, "synthetic_train": {"path": str(out / "synthetic_train.jsonl"), "problems": rows},
          "code": {"path": str(out / "code.jsonl"), "files": manifest["num_files"], "chars": manifest["num_chars"]}}
