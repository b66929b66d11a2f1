"""RL tasks are data: GSM8K and MATH train from ../shared/data (test splits held out), the synthetic task, any JSONL with
configurable fields; bad rows are counted and reported with file and line, or stop the run when asked to be strict;
the question stream is a pure function of (seed, position)."""
import json

import numpy as np
import pytest

from dsmath import config as config_lib
from dsmath import rl
from dsmath.data.tokenizer import train_sentencepiece
from dsmath.paths import shared_data_dir
from dsmath.rl.config import TaskConfig
from dsmath.rl.tasks import BadInputError, build_task, stream_indices


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  """A small sentencepiece model over GSM8K and MATH train questions (byte fallback covers any other text)."""
  texts = []
  for name, field in (("gsm8k", "question"), ("math", "problem")):
    with open(shared_data_dir() / name / "train.jsonl") as f:
      texts += [json.loads(line)[field] for line, _ in zip(f, range(300))]
  return train_sentencepiece(texts, tmp_path_factory.mktemp("tok") / "spm.model", vocab_size=600)


def task_config(**given) -> TaskConfig:
  return config_lib.resolve(TaskConfig, given, "config.task")


def test_gsm8k_and_math_train_with_their_test_splits_held_out(tokenizer):
  cfg = task_config(sources={"gsm8k": {"kind": "gsm8k", "max_train": 40, "max_test": 10},
                             "math": {"kind": "math", "max_train": 30, "max_test": 10}}, prompt="zero_shot")
  task = build_task(cfg, tokenizer, seed=0)
  assert len(task.train) == 70 and len(task.test) == 20 and task.bad_rows["total"] == 0
  g = [q for q in task.train if q.source == "gsm8k"]
  m = [q for q in task.train if q.source == "math"]
  first = json.loads((shared_data_dir() / "gsm8k" / "train.jsonl").open().readline())
  assert g[0].question == first["question"] and g[0].answer == first["answer"].split("####")[-1].strip()
  assert g[0].origin.endswith("gsm8k/train.jsonl:1") and "\\boxed{" in g[0].solution and "<<" not in g[0].solution
  assert all(q.answer for q in m) and all("math/train.jsonl:" in q.origin for q in m)
  assert all("test.jsonl" in q.origin for q in task.test)
  assert not {q.question for q in task.train} & {q.question for q in task.test}
  # prompts are the paper's chain-of-thought instruction, tokenized once and left-padded to one width
  prompts = task.prompts(task.train[:1])
  assert prompts[0].endswith("Please reason step by step, and put your final answer within \\boxed{}.")
  row = task.prompt_tokens[0][task.prompt_mask[0] > 0].tolist()
  assert row == [tokenizer.bos_id] + tokenizer.encode(prompts[0])
  assert task.prompt_tokens.shape == (70, task.prompt_len) and task.prompt_len % 8 == 0


def test_bad_rows_are_reported_with_file_and_line_or_raise(tmp_path, tokenizer):
  path = tmp_path / "qs.jsonl"
  lines = [json.dumps({"q": "What is 2 + 3?", "a": "5"}),
           "{not json",
           "null",
           json.dumps({"q": "What is 4 + 4?"}),  # no answer
           json.dumps({"q": "", "a": "1"}),  # no question
           json.dumps({"q": "What is " + " + ".join(["1"] * 200) + "?", "a": "200"}),  # longer than the budget
           json.dumps({"q": "What is 7 - 2?", "a": 5}),
           ""]
  path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n")
  cfg = task_config(sources={"mine": {"kind": "jsonl", "train_path": str(path), "question_field": "q",
                                      "answer_field": "a"}}, prompt="plain", prompt_budget=48)
  task = build_task(cfg, tokenizer, seed=0)
  assert [q.question for q in task.train] == ["What is 2 + 3?", "What is 7 - 2?"]
  assert [q.answer for q in task.train] == ["5", "5"]
  bad = task.bad_rows
  assert bad["total"] == 6 and bad["counts"] == {
      "malformed JSON": 1, "not a JSON object": 1, "no answer (field 'a', format 'plain')": 1,
      "no question (field 'q')": 1, "prompt longer than the budget": 1, "invalid UTF-8": 1}
  where = "\n".join(bad["examples"])
  for line in (2, 3, 4, 5, 6, 9):
    assert f"{path}:{line}:" in where, where
  strict = task_config(sources=dict(cfg.sources), prompt="plain", prompt_budget=48, on_bad_row="raise")
  with pytest.raises(BadInputError, match=f"{path}:2: malformed JSON"):
    build_task(strict, tokenizer, seed=0)


def test_missing_file_and_empty_task_are_clear_errors(tmp_path, tokenizer):
  with pytest.raises(FileNotFoundError, match=r"config\.task\.sources\.mine"):
    build_task(task_config(sources={"mine": {"kind": "jsonl", "train_path": str(tmp_path / "none.jsonl")}}),
               tokenizer, 0)
  (tmp_path / "empty.jsonl").write_text("null\n")
  with pytest.raises(ValueError, match="no usable training question"):
    build_task(task_config(sources={"mine": {"kind": "jsonl", "train_path": str(tmp_path / "empty.jsonl")}}),
               tokenizer, 0)


def test_question_stream_is_a_pure_function_of_the_position():
  whole = stream_indices(3, 10, 0, 35)
  assert sorted(whole[:10].tolist()) == list(range(10)) and sorted(whole[10:20].tolist()) == list(range(10))
  assert whole[:10].tolist() != whole[10:20].tolist()  # a fresh order every epoch
  parts = np.concatenate([stream_indices(3, 10, p, 7) for p in range(0, 35, 7)])
  np.testing.assert_array_equal(parts, whole)


def test_gsm8k_rl_runs_from_its_config(tmp_path, tokenizer):
  """configs/grpo_gsm8k_math.py (the paper's RL questions) runs, shrunk to one step of a tiny model."""
  from tests.rl_configs import set_key
  import importlib
  c = importlib.import_module("configs.grpo_gsm8k_math").get_config()
  for k, v in {"task.sources.gsm8k.max_train": 8, "task.sources.gsm8k.max_test": 4, "task.sources.math.max_train": 8,
               "task.sources.math.max_test": 4, "task.tokenizer": tokenizer.path, "model.vocab_size": 600,
               "model.max_positions": 1024, "rl.steps": 1, "rollout.prompts_per_step": 2, "rollout.group_size": 2,
               "rollout.max_new_tokens": 8, "eval.num_questions": 2, "eval.samples": 0, "rl.iterations": 1}.items():
    set_key(c, k, v)
  c.init_from = ""
  c.model = {"preset": "tiny", "vocab_size": 600, "max_positions": 1024}
  summary = rl.run(c, tmp_path)
  assert summary["status"] == "completed" and summary["num_train_questions"] == 16
  assert summary["bad_rows"]["total"] == 0 and "test_accuracy_greedy_before" in summary
