"""SFT data: chat formatting of CoT / PoT / tool-integrated examples, loss on response tokens only, train splits."""
import contextlib
import io
import json
import re

import numpy as np
import pytest

from dsmath.data import (BLOCK_CLOSE, CODE_OPEN, OUTPUT_OPEN, TEMPLATES, builtin_sft_sources, make_sft_iterator,
                         sft_examples, train_sentencepiece)
from dsmath.data.sft import SFT_FORMATTERS, check_not_test_split, gsm8k_final
from dsmath.data import prompts
from dsmath.paths import shared_data_dir


def _gsm8k(n):
  with open(shared_data_dir() / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
    return [json.loads(next(f)) for _ in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  texts = [r["question"] + "\n" + r["answer"] for r in _gsm8k(2000)]
  return train_sentencepiece(texts, tmp_path_factory.mktemp("tok") / "spm.model", vocab_size=512)


def _run_python(code: str) -> str:
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(code, {"__builtins__": {"print": print}})  # the programs are arithmetic built from GSM8K annotations
  return out.getvalue()


def test_program_and_tool_examples_agree_with_real_python():
  blocks = re.compile(re.escape(CODE_OPEN) + r"(.*?)" + re.escape(BLOCK_CLOSE) + re.escape(OUTPUT_OPEN) + r"(.*?)"
                      + re.escape(BLOCK_CLOSE), re.S)
  n_pot = 0
  for record in _gsm8k(200):
    style, question, response = SFT_FORMATTERS["gsm8k_tool"](record)
    assert style == "tool" and question == record["question"] and "<<" not in response
    pairs = blocks.findall(response)
    assert len(pairs) == record["answer"].count("<<")
    for code, output in pairs:
      assert _run_python(code) == output  # each output block is what the code prints
    assert response.endswith(f"\\boxed{{{gsm8k_final(record['answer'])}}}$.")
    pot = SFT_FORMATTERS["gsm8k_pot"](record)
    if pot is not None:
      n_pot += 1
      program = pot[2][len(CODE_OPEN):-len(BLOCK_CLOSE)]
      printed = float(_run_python(program))
      assert printed == pytest.approx(float(gsm8k_final(record["answer"]).replace(",", "")))
  assert n_pot > 150


def _decode_masked(tok, batch, b, want):
  seg, mask = batch["segment_ids"][b], batch["loss_mask"][b]
  return [tok.decode(batch["targets"][b][(seg == s) & (mask == want)]) for s in np.unique(seg[seg > 0])]


def test_sft_batches_train_only_on_responses(tok):
  cfg = {"sources": builtin_sft_sources(["gsm8k_cot", "gsm8k_tool"]), "seq_len": 512, "batch_size": 2, "seed": 0}
  it = make_sft_iterator(cfg, tok, process_index=0, process_count=1)
  saw_tool = False
  for _ in range(3):
    batch = next(it)
    assert set(batch) == {"inputs", "targets", "segment_ids", "positions", "loss_mask"}
    for b in range(2):
      seg, mask = batch["segment_ids"][b], batch["loss_mask"][b]
      assert np.all(mask[seg == 0] == 0)
      for s in np.unique(seg[seg > 0]):
        where = np.flatnonzero(seg == s)
        np.testing.assert_array_equal(batch["positions"][b, where], np.arange(len(where)))
        assert batch["inputs"][b, where[0]] == tok.bos_id
        m = mask[where]
        # The prompt comes first and is never trained on; the response ends with a trained EOS (unless the example
        # was longer than the row and truncated).
        first = int(np.argmax(m))
        assert first > 0 and not m[:first].any() and m[-1] == 1
        assert batch["targets"][b, where[-1]] == tok.eos_id or len(where) == 512
        prompt = tok.decode(batch["inputs"][b, where[:first + 1]])
        assert prompt.startswith(TEMPLATES["deepseek"].user_prefix) and prompt.endswith("\n\nAssistant: ")
      saw_tool |= OUTPUT_OPEN in tok.decode(batch["targets"][b][seg > 0])
      trained = "".join(_decode_masked(tok, batch, b, 1))
      assert "Please reason step by step" not in trained and "User:" not in trained
  assert saw_tool


def test_tool_outputs_are_not_trained(tok):
  cfg = {"sources": builtin_sft_sources(["gsm8k_tool"]), "seq_len": 512, "batch_size": 1, "seed": 0,
         "shuffle": False}
  batch = next(make_sft_iterator(cfg, tok, process_index=0, process_count=1))
  seg, mask, targets = batch["segment_ids"][0], batch["loss_mask"][0], batch["targets"][0]
  doc = seg == 1
  full = tok.decode(targets[doc])
  untrained_response = tok.decode(targets[doc & (mask == 0)][-40:])
  # The first GSM8K record: 48/2 and 48+24, whose printed outputs 24.0 and 72 are the interpreter's.
  assert f"{CODE_OPEN}print(48/2)\n{BLOCK_CLOSE}{OUTPUT_OPEN}24.0\n{BLOCK_CLOSE}" in full
  assert untrained_response.endswith("24.0\n72\n")
  assert "print(48/2)" in tok.decode(targets[doc & (mask == 1)])


def test_delimiters_and_instructions_are_the_evaluations():
  assert (CODE_OPEN, OUTPUT_OPEN, BLOCK_CLOSE) == (prompts.PYTHON_OPEN, prompts.OUTPUT_OPEN, prompts.BLOCK_CLOSE)
  style, question, response = SFT_FORMATTERS["gsm8k_pot"](_gsm8k(1)[0])
  assert prompts.extract_last_program(response) == "step1 = 48/2\nstep2 = 48+24\nprint(step2)\n"
  assert TEMPLATES["deepseek"].prompt("pot", question).endswith(prompts.POT_SUFFIX_EN + "\n\nAssistant: ")


def test_builtin_sources_use_train_splits_only(tmp_path):
  sources = builtin_sft_sources()
  assert set(sources) == {"gsm8k_cot", "gsm8k_pot", "gsm8k_tool", "math_cot"}
  assert all(s["path"].endswith("/train.jsonl") for s in sources.values())
  examples = sft_examples({"sources": builtin_sft_sources(["math_cot"]), "shuffle": False}, process_index=0,
                          process_count=1)
  first_math = json.loads(open(shared_data_dir() / "math" / "train.jsonl", encoding="utf-8").readline())
  (prompt, trained_prompt), (response, trained) = examples[0]["item"]
  assert not trained_prompt and trained and response == first_math["solution"]
  assert first_math["problem"].strip() in prompt
  with pytest.raises(ValueError, match="evaluation split"):
    check_not_test_split(str(shared_data_dir() / "gsm8k" / "test.jsonl"))
  with pytest.raises(ValueError, match="evaluation split"):
    sft_examples({"sources": {"t": {"path": "shared:math/test.jsonl", "formatter": "math_cot"}}},
                 process_index=0, process_count=1)
  with pytest.raises(KeyError, match="not an SFT formatter"):
    sft_examples({"sources": {"t": {"path": "shared:math/train.jsonl", "formatter": "math"}}},
                 process_index=0, process_count=1)


def test_sft_state_round_trip(tok):
  cfg = {"sources": builtin_sft_sources(["gsm8k_cot", "math_cot"]), "seq_len": 256, "batch_size": 2, "seed": 1}
  it = make_sft_iterator(cfg, tok, process_index=0, process_count=1)
  next(it)
  state = it.get_state()
  after = [next(it) for _ in range(2)]
  resumed = make_sft_iterator(cfg, tok, process_index=0, process_count=1)
  resumed.set_state(state)
  for a, b in zip(after, [next(resumed) for _ in range(2)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
