"""Every stage from an imported Qwen2.5-shaped and Llama-3-shaped model: hf_import -> SFT in the model's chat
template -> GRPO on GSM8K train with the math-verify rule reward (chat prompts) -> eval -> hf_export, the run
artifacts carrying the family, and the export loading in transformers with the RL policy's logits and the model's
tokenizer and chat template. The SFT is the train job's (packed, data.sft_template "chat") for Qwen and the RL
paradigm's SFT entry on GSM8K's gold solutions (task.chat) for Llama 3.

The HF directories are built in code (tests/helpers/hf_family.py: a tiny random model saved with save_pretrained,
a BPE tokenizer trained here, the family's chat template written here); a few steps of each stage.
"""
import json

import jax
import ml_collections
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from configs import grpo_gsm8k_math
from dsmath import jobs, model
from dsmath.data import prompt_ids
from dsmath.runs import load_run
from tests.helpers.hf_family import write_checkpoint

TRAIN = {"total_steps": 3, "checkpoint_every": 3, "peak_flops": 1e9, "progress": False, "async_checkpoint": False}
FAMILY = {"qwen2.5": "qwen2", "llama3": "llama"}


def _run(config, workdir) -> dict:
  return jobs.run_job(config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config),
                      str(workdir))


@pytest.mark.parametrize("family", sorted(FAMILY))
def test_every_stage_from_an_imported_model(family, tmp_path):
  hf_dir = tmp_path / "hf"
  write_checkpoint(family, hf_dir)

  imported = _run({"job": "hf_import", "hf_path": str(hf_dir)}, tmp_path / "import")
  run = load_run(tmp_path / "import")
  assert imported["family"] == run.family == FAMILY[family]
  assert json.loads((tmp_path / "import" / "run.json").read_text())["family"] == FAMILY[family]
  assert run.tokenizer["path"] == str(hf_dir / "tokenizer.json")
  assert run.model.tie_embeddings and run.model.qkv_bias == (family == "qwen2.5")
  assert run.model.rope_type == ("llama3" if family == "llama3" else "default")

  def gsm8k_rl(init_from, method, steps, max_new_tokens=12):
    c = grpo_gsm8k_math.get_config()
    c.init_from = str(init_from)
    c.rl.method, c.rl.steps = method, steps
    c.rl.reward = c.rl.reward if method == "grpo" else ""  # the gold data needs no reward
    c.task.sources = {"gsm8k": {"kind": "gsm8k", "max_train": 8, "max_test": 2}}
    c.task.chat = True
    c.task.prompt_budget = 0
    c.rollout.prompts_per_step, c.rollout.group_size, c.rollout.max_new_tokens = 2, 2, max_new_tokens
    c.eval.num_questions, c.eval.batch_rows = (2 if method == "grpo" else 0), 4
    c.checkpoint.async_save = False
    return c

  if family == "qwen2.5":
    sft = _run({"job": "sft", "init_from": str(tmp_path / "import"), "train": TRAIN,
                "optimizer": {"warmup_steps": 0, "peak_lr": 1e-3},
                "data": {"sources": {"gsm8k": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k_cot"}},
                         "seq_len": 256, "batch_size": 2, "sft_template": "chat"}}, tmp_path / "sft")
    assert np.isfinite(sft["final_loss"])
  else:  # gold solutions as the chat template's assistant turns, all within 256 tokens
    _run(gsm8k_rl(tmp_path / "import", "sft", 3, max_new_tokens=256), tmp_path / "sft")
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["gold_too_long"] for r in rows if "gold_too_long" in r] == [0.0] * 3
  assert load_run(tmp_path / "sft").family == FAMILY[family]

  rl_summary = _run(gsm8k_rl(tmp_path / "sft", "grpo", 2), tmp_path / "rl")
  rl_run = load_run(tmp_path / "rl")
  assert (rl_run.job, rl_run.step, rl_run.family, rl_run.parents) == ("rl", 2, FAMILY[family], (str(tmp_path / "sft"),))
  assert rl_run.model == run.model and rl_run.tokenizer == run.tokenizer
  assert rl_run.config["rl"]["reward"] == "rule" and rl_run.config["rl"]["grade_mode"] == "math_verify"
  assert rl_run.config["task"]["chat"] and "test_accuracy_greedy" in json.dumps(rl_summary)
  rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "reward_mean" in r] == [1, 2]

  ev = _run({"job": "eval", "checkpoint": str(tmp_path / "rl"), "sampling": {"max_new_tokens": 12},
             "eval": {"benchmarks": ["gsm8k"], "num_examples": 2, "chat": True, "bootstrap_resamples": 10,
                      "grader_workers": 1}}, tmp_path / "eval")
  assert ev["gsm8k"]["num_problems"] == 2 and ev["gsm8k"]["chat"] and ev["run"]["job"] == "rl"

  out = tmp_path / "export"
  exported = _run({"job": "hf_export", "run": str(tmp_path / "rl")}, out)
  assert exported["family"] == FAMILY[family]
  assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(exported["tokenizer_files"])
  hf = AutoModelForCausalLM.from_pretrained(str(out)).eval()
  assert type(hf).__name__ == {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[FAMILY[family]]
  tokens = np.random.RandomState(0).randint(0, run.model.vocab_size, (2, 24))
  with torch.no_grad():
    theirs = hf(torch.tensor(tokens)).logits.float().numpy()
  ours = np.asarray(model.logits(rl_run.model, rl_run.load_params(), tokens))
  np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
  tok = AutoTokenizer.from_pretrained(str(out))
  messages = [{"role": "user", "content": "What is 2 + 3?"}]
  assert tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"] == prompt_ids(
      rl_run.load_tokenizer(), "What is 2 + 3?", chat=True)
  before = load_run(tmp_path / "import").load_params()
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(rl_run.load_params())))
