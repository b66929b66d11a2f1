"""Tool-integrated RL rollouts: the policy's python blocks run in the real sandbox during the rollout, the output
block is context for the rest of the completion but never trained on, the reward grades the whole text, and the
held-out evaluation runs the programs too. The policy is a tiny model crafted to write a program after a newline
(tests/helpers/tool_model.py)."""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model, rl
from dsmath.rl import rewards
from dsmath.sample import text as sample_text
from dsmath.sample.tools import generate_with_tools
from dsmath.config import ConfigError
from dsmath.data import prompts as eval_prompts
from dsmath.runs import load_run, write_run
from dsmath.train import save_params

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from tool_model import ANSWER, CFG, byte_tokenizer, planted_params  # noqa: E402

OUTPUT = eval_prompts.OUTPUT_OPEN + "42\n" + eval_prompts.BLOCK_CLOSE
WANT = eval_prompts.PYTHON_OPEN + "print(6*7)\n" + eval_prompts.BLOCK_CLOSE + OUTPUT + ANSWER


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("rl_tools")
  tok = byte_tokenizer(d / "tokenizer.json")
  params = planted_params(tok, "\n")  # the plain prompt is the question and a newline: then the program
  path = d / "questions.jsonl"
  path.write_text("".join(json.dumps({"question": f"Q{i}: what is 6*7?", "answer": "42"}) + "\n" for i in range(4)))
  return tok, params, str(path)


def _config(path, **rollout):  # GRPO with tool rounds on the questions at `path`
  c = rl.default_config()
  c.task.sources = {"q": {"kind": "jsonl", "train_path": path, "test_path": path}}
  c.task.prompt = "plain"
  c.rl.method = "grpo"
  c.rollout.prompts_per_step = 2
  c.rollout.group_size = 2
  c.rollout.max_new_tokens = 12
  c.rollout.tool_rounds = 2
  c.rollout.tool_output_tokens = 16
  for k, v in rollout.items():
    c.rollout[k] = v
  return c


def test_rollout_runs_the_programs_and_trains_only_on_the_models_tokens(setup):
  tok, params, path = setup
  c = _config(path, dynamic_sampling="off")
  c.rl.method = "dapo"  # its overlong shaping counts the tokens the model wrote, not the output blocks it read
  c.reward.overlong_buffer = 10
  run = rl.resolve_rl_config(c)
  task = rl.build_task(run.config.task, tok, seed=0)
  rl_step = rl.RLStep(run, CFG, task, total_updates=2)
  try:
    state = rl_step.init_state(params, seed=0)
    exp = rl_step.online_experience(state, np.arange(2), jax.random.key(1))
    assert exp.texts == [WANT] * 4
    assert list(exp.correct) == [1.0] * 4  # graded on the whole text, after the output block
    written = len(tok.encode(WANT.replace(OUTPUT, ""))) + 1  # and EOS
    shaped = 1.0 + rewards.overlong_penalty(np.full(4, written), np.zeros(4, bool), 12, 10)
    assert list(exp.rewards) == pytest.approx(list(shaped)) and not np.allclose(
        shaped, 1.0 + rewards.overlong_penalty(exp.lengths, np.zeros(4, bool), 12, 10))
    b = {k: np.asarray(v) for k, v in exp.batch.items()}
    width = 12 + 2 * 16  # the model's tokens + tool_rounds output blocks
    assert b["completion"].shape == b["mask"].shape == b["context_mask"].shape == (4, width)
    for r in range(4):
      n = int(exp.lengths[r])
      assert b["context_mask"][r].tolist() == [1.0] * n + [0.0] * (width - n)
      # the output block is read, not trained on: exactly its tokens are out of the loss mask
      assert tok.decode(b["completion"][r, :n][b["mask"][r, :n] == 0].tolist()) == OUTPUT
      assert tok.decode(b["completion"][r, :n][b["mask"][r, :n] == 1].tolist()) == WANT.replace(OUTPUT, "")
    # the sampler's log-probs are teacher forcing's, and the forward the update and the reference run reads the
    # output block as context: checked with random params (the planted model's tokens are near-certain whatever
    # the context), against the model's logits over the plain sequence prompt + whole completion
    m = b["mask"] == 1
    np.testing.assert_allclose(np.asarray(rl_step.logprobs(state["policy"]["params"], exp.batch))[m],
                               b["old_logp"][m], atol=2e-4, rtol=0)
    other = rl_step.copy_params(model.init_params(CFG, jax.random.key(7)))
    lp = np.asarray(rl_step.logprobs(other, exp.batch))
    for r in range(4):
      n = int(exp.lengths[r])
      seq = b["prompt"][r][b["prompt_mask"][r] == 1].tolist() + b["completion"][r, :n].tolist()
      p = len(seq) - n
      full = jax.nn.log_softmax(model.logits(CFG, other, jnp.asarray([seq]))[0], -1)
      want = np.asarray(full[p - 1:len(seq) - 1][np.arange(n), b["completion"][r, :n]])
      np.testing.assert_allclose(lp[r, :n][m[r, :n]], want[m[r, :n]], atol=1e-4, rtol=0)
    assert np.all(lp[~m] == 0) and np.all(b["old_logp"][~m] == 0)

  finally:
    rl_step.close()


def test_rl_stage_with_tools_from_a_run(setup, tmp_path, monkeypatch):
  # the whole stage (python -m experiments.run with a job "rl" config): from a finished run, two tool-integrated GRPO
  # steps, held-out evaluation before and after with the programs run, checkpoints, run.json
  tok, params, path = setup
  evaluated = []  # what the held-out evaluation generated (the planted policy answers right with or without tools)

  def spy(*args, **kwargs):
    out = generate_with_tools(*args, **kwargs)
    evaluated.extend(out.texts)
    return out
  monkeypatch.setattr(sample_text, "generate_with_tools", spy)
  parent = tmp_path / "sft"
  save_params(parent, 0, params)
  write_run(parent, job="sft", model=CFG, tokenizer={"kind": "hf", "path": tok.path}, step=0, config={})
  c = _config(path)
  c.init_from = str(parent)
  c.rl.steps = 2
  c.eval.num_questions = 4
  c.checkpoint.every = 1
  summary = rl.run(c, tmp_path / "rl")
  assert summary["status"] == "completed" and summary["steps"] == 2
  # the evaluation runs the programs too (without them the policy never reads an output)
  for kind in ("greedy", "sampled"):
    assert summary[f"test_accuracy_{kind}_before"] == summary[f"test_accuracy_{kind}_after"] == 1.0
  assert len(evaluated) == 2 * 2 * 4 and set(evaluated) == {WANT}  # before and after, greedy and sampled, 4 questions
  rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if not r.get("evaluation")]
  assert len(train) == 2
  assert all(r["accuracy"] == 1.0 and r["tool_tokens_mean"] == len(tok.encode(OUTPUT)) and
             r["model_tokens_mean"] == len(tok.encode(WANT.replace(OUTPUT, ""))) + 1 for r in train), train
  assert load_run(tmp_path / "rl").config["rollout"]["tool_rounds"] == 2


def test_without_tool_rounds_no_program_runs(setup):
  # the control: the same policy and keys without tool rounds write the same tokens with no output block between
  tok, params, path = setup
  run = rl.resolve_rl_config(_config(path, tool_rounds=0))
  rl_step = rl.RLStep(run, CFG, rl.build_task(run.config.task, tok, seed=0), total_updates=1)
  try:
    exp = rl_step.online_experience(rl_step.init_state(params, seed=0), np.arange(2), jax.random.key(1))
    assert exp.texts == [WANT.replace(OUTPUT, "")] * 4
    assert "context_mask" not in exp.batch
  finally:
    rl_step.close()


def test_tool_config_errors_name_the_key(setup):
  _, _, path = setup
  c = _config(path, tool_rounds=0)
  c.task.prompt = "tool"
  with pytest.raises(ConfigError, match="rollout.tool_rounds >= 1"):
    rl.resolve_rl_config(c)
  for method in ("ppo", "grpo_ps", "rft"):
    c = _config(path)
    c.rl.method = method
    with pytest.raises(ConfigError, match=f"rollout.tool_rounds=2.*rl.method='{method}'"):
      rl.resolve_rl_config(c)
  c = _config(path, tool_rounds=0)
  c.task.prompt, c.rl.method = "tool", "rft"
  with pytest.raises(ConfigError, match="rl.method='rft'.*samples without running"):
    rl.resolve_rl_config(c)
  # the paradigm's SFT (also rl.sft_warmup_steps of a tool run) samples nothing: tool rounds reach its evaluation only
  c = _config(path)
  c.task.prompt, c.rl.method = "tool", "sft"
  assert rl.resolve_rl_config(c).config.rollout.tool_rounds == 2
  with pytest.raises(ConfigError, match="tool_rounds"):
    rl.resolve_rl_config(_config(path, tool_rounds=-1))
