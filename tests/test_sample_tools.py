"""Tool-integrated generation end to end: a tiny model whose params are crafted to write a python block, the real
sandbox runs it, the output block goes back into the same KV cache, and the model finishes its answer (the model:
tests/helpers/tool_model.py)."""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model
from dsmath.data import prompts as eval_prompts
from dsmath.grading.sandbox import SandboxUnavailable
from dsmath.sample import Temperature, generate, stop_string_sequences
from dsmath.sample.tools import ToolConfig, closed_program, generate_with_tools

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from tool_model import ANSWER, CFG, byte_tokenizer, planted_params  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  return byte_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def params(tokenizer):
  return planted_params(tokenizer, "Answer:")


def _check_logprobs(params, prompt, out, r):
  """Model log-probs of the model-sampled tokens equal teacher forcing over prompt + whole completion."""
  n = int(out.lengths[r])
  seq = list(prompt) + out.tokens[r, :n].tolist()
  logp = jax.nn.log_softmax(model.logits(CFG, params, jnp.asarray([seq]))[0], -1)
  ref = np.asarray(logp[len(prompt) - 1:len(seq) - 1][np.arange(n), out.tokens[r, :n]])
  m = out.model_mask[r, :n]
  np.testing.assert_allclose(out.model_logprobs[r, :n][m], ref[m], atol=1e-5, rtol=0)
  np.testing.assert_array_equal(out.model_logprobs[r, :n][~m], 0.0)


@pytest.mark.parametrize("segments", [1, 3])  # each round reads a window of the cache, grown in 1 or 3 steps
def test_code_runs_in_sandbox_and_generation_continues(params, tokenizer, segments):
  prompts = [tokenizer.encode("Q: what is 6*7?\nAnswer:"), tokenizer.encode("Answer:"), tokenizer.encode("Hi")]
  out = generate_with_tools(CFG, params, prompts, tokenizer=tokenizer, max_new_tokens=12, num_samples=2,
                            strategy=Temperature(1.0), rng=jax.random.key(0),
                            tools=ToolConfig(max_rounds=2, max_output_tokens=16), decode_segments=segments)
  want = (eval_prompts.PYTHON_OPEN + "print(6*7)\n" + eval_prompts.BLOCK_CLOSE + eval_prompts.OUTPUT_OPEN + "42\n" +
          eval_prompts.BLOCK_CLOSE + ANSWER)
  for r in range(4):  # the two prompts that end in "Answer:", two samples each
    assert out.texts[r] == want, out.texts[r]
    assert out.finish_reasons[r] == "eos" and out.rounds[r] == 1
    (run,) = out.executions[r]
    assert run.ok and run.stdout == "42\n"
    n = int(out.lengths[r])
    text_of = lambda keep: tokenizer.decode(out.tokens[r, :n][keep])
    assert text_of(~out.model_mask[r, :n]) == eval_prompts.OUTPUT_OPEN + "42\n" + eval_prompts.BLOCK_CLOSE
    assert out.model_mask[r, :n].sum() == 5  # python open, program, close, answer, EOS
  for r in range(6):
    _check_logprobs(params, prompts[r // 2], out, r)


def test_rounds_limit_and_errors(params, tokenizer):
  prompt = tokenizer.encode("Answer:")
  out = generate_with_tools(CFG, params, [prompt], tokenizer=tokenizer, max_new_tokens=12,
                            tools=ToolConfig(max_rounds=0, max_output_tokens=16))
  assert out.texts[0] == eval_prompts.PYTHON_OPEN + "print(6*7)\n" + eval_prompts.BLOCK_CLOSE
  assert out.finish_reasons == ("stop",) and out.rounds[0] == 0 and out.executions == ((),)
  # The plain sampler stops at the same fence through stop strings.
  plain = generate(CFG, params, [prompt], max_new_tokens=12, stop_strings=[eval_prompts.BLOCK_CLOSE],
                   tokenizer=tokenizer)
  assert plain.texts == out.texts and plain.finish_reasons == ("stop",)
  # So does continuous batching, its rows refilled through one cache slot.
  rows = [prompt, tokenizer.encode("Q:"), tokenizer.encode("abc def")]
  static, cont = (generate(CFG, params, rows, max_new_tokens=12, stop_strings=[eval_prompts.BLOCK_CLOSE],
                           tokenizer=tokenizer, batching=b, slots=1) for b in ("static", "continuous"))
  assert cont.texts == static.texts and cont.texts[0] == out.texts[0]
  assert cont.finish_reasons == static.finish_reasons == ("stop", "stop", "length")
  assert cont.lengths.tolist() == static.lengths.tolist() == [3, 2, 12]
  assert stop_string_sequences(tokenizer, [eval_prompts.BLOCK_CLOSE]) == [tokenizer.encode(eval_prompts.BLOCK_CLOSE)]
  with pytest.raises(ValueError, match="max_rounds"):
    ToolConfig(max_rounds=-1)


def test_sandbox_failure_is_raised_not_shown_to_the_model(params, tokenizer):
  # An interpreter the sandbox cannot start is an infrastructure failure: raised before any generation, never turned
  # into a program's error output for the model to read.
  with pytest.raises(SandboxUnavailable, match="does not exist"):
    generate_with_tools(CFG, params, [tokenizer.encode("Answer:")], tokenizer=tokenizer, max_new_tokens=12,
                        tools=ToolConfig(max_rounds=2, max_output_tokens=16, python="/nonexistent/bin/python3"))


def test_closed_program():
  block = eval_prompts.PYTHON_OPEN + "x = 1\nprint(x)\n" + eval_prompts.BLOCK_CLOSE
  assert closed_program("Let us compute.\n" + block) == "x = 1\nprint(x)\n"
  assert closed_program("text\n```\n") is None
  assert closed_program(block + eval_prompts.OUTPUT_OPEN + "1\n" + eval_prompts.BLOCK_CLOSE) is None
