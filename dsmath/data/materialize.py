"""The `sources` stage: writes generated training sources as JSONL files the Grain pipeline reads.

  <workdir>/synthetic_train.jsonl   the synthetic task's train split ({question, solution, answer, text}); the test
                                    split is never written here (evaluation regenerates it, disjoint by construction)
  <workdir>/code.jsonl              Python standard-library sources (the toy stand-in for GitHub code)
"""
import dataclasses
import json
import os
from pathlib import Path

import ml_collections

from dsmath.config import check_keys
from dsmath.data import code_text, synthetic


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "sources"
  c.workdir = ""
  c.seed = 0
  c.synthetic = ml_collections.ConfigDict({
      "num_train": 2000, "test_fraction": 0.2,
      "difficulty": ml_collections.ConfigDict(dataclasses.asdict(synthetic.Difficulty())),
  })
  c.code = ml_collections.ConfigDict({"max_chars": 1_000_000})
  return c


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  check_keys("sources stage config", config, default_config().keys())
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  s = config.synthetic
  problems = synthetic.make_split("train", int(s.num_train), int(config.seed), synthetic.difficulty_from_dict(s.difficulty.to_dict()),
                                  float(s.test_fraction))
  rows = [{**p.as_dict(), "text": p.prompt + p.solution} for p in problems]
  tmp = out / "synthetic_train.jsonl.tmp"
  tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
  os.replace(tmp, out / "synthetic_train.jsonl")
  manifest = code_text.write_code_jsonl(out / "code.jsonl", max_chars=int(config.code.max_chars), seed=int(config.seed))
  return {"synthetic_train": {"path": str(out / "synthetic_train.jsonl"), "problems": len(rows)},
          "code": {"path": str(out / "code.jsonl"), "files": manifest["num_files"], "chars": manifest["num_chars"]}}
