"""Corrupted copies of the policy's samples as reward-model rows (dsmath.rl.corruptions, reward_model.
corrupted_fraction): each kind against its definition on known tokens, and a round's rows from a real policy: the
copies sit after the samples, hold their source's prompt and question, are what their kind says of the source's
tokens, and carry the answer's verdict recomputed here from the decoded text."""
import re

import numpy as np
import pytest

from dsmath import rl
from dsmath.config import ConfigError
from dsmath.rl import corruptions
from tests.rl_configs import config

EOS = 2
# three steps: tokens 0-2, 3-5, 6-9 (the last holds the answer and the EOS)
TOKENS, ENDS = [10, 11, 12, 13, 14, 15, 16, 17, 18, EOS], [2, 5, 9]


def test_drop_step_removes_one_step_before_the_last():
  seen = set()
  for s in range(40):
    out = corruptions.drop_step(TOKENS, ENDS, EOS, np.random.default_rng(s))
    assert out in ([13, 14, 15, 16, 17, 18, EOS], [10, 11, 12, 16, 17, 18, EOS]), out
    seen.add(tuple(out))
  assert len(seen) == 2  # either of the two steps, never the answer's
  assert corruptions.drop_step([10, 11, EOS], [2], EOS, np.random.default_rng(0)) is None  # one step: nothing to drop


@pytest.mark.parametrize("kind", ["suffix", "prefix"])
def test_suffix_and_prefix_cut_a_proper_part(kind):
  cuts = set()
  for s in range(60):
    out = corruptions.CORRUPTIONS[kind](TOKENS, ENDS, EOS, np.random.default_rng(s))
    assert 2 <= len(out) <= len(TOKENS) - 1 and out[-1] == EOS
    if kind == "suffix":
      assert out == TOKENS[len(TOKENS) - len(out):]
    else:
      assert out[:-1] == TOKENS[:len(out) - 1]
    cuts.add(len(out))
  assert cuts == set(range(2, len(TOKENS)))  # every cut from 1 to n-2 tokens can come out
  assert corruptions.CORRUPTIONS[kind]([10, EOS], [1], EOS, np.random.default_rng(0)) is None


def test_corrupt_draws_its_share_of_rows_and_names_unknown_kinds():
  tokens = np.tile(np.asarray(TOKENS), (10, 1))
  lengths = np.full(10, len(TOKENS))
  lengths[3] = 2  # too short for a suffix or a prefix, one step: no copy
  ends = [ENDS] * 10
  ends[3] = [1]
  src, new, kinds = corruptions.corrupt(tokens, lengths, ends, 1.0, ("suffix",), EOS, np.random.default_rng(0))
  assert src.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9] and kinds == ["suffix"] * 9
  src, new, kinds = corruptions.corrupt(tokens, lengths, ends, 0.4, ("drop_step", "prefix"), EOS,
                                        np.random.default_rng(1))
  again = corruptions.corrupt(tokens, lengths, ends, 0.4, ("drop_step", "prefix"), EOS, np.random.default_rng(1))
  assert len(src) <= 4 and np.all(np.diff(src) > 0) and (src.tolist(), new, kinds) == (again[0].tolist(), *again[1:])
  with pytest.raises(ValueError, match="unknown corruption"):
    corruptions.corrupt(tokens, lengths, ends, 0.5, ("shuffle",), EOS, np.random.default_rng(0))


def test_a_bad_corruption_config_names_its_key(tmp_path):
  for key, value in (("reward_model.corruptions", ("shuffle",)), ("reward_model.corrupted_fraction", 1.5)):
    with pytest.raises(ConfigError, match=rf"config\.reward_model: {key.split('.')[1]} must"):
      rl.resolve_rl_config(config("grpo_orm_toy", **{key: value}))


def _boxed_verdict(text: str, gold: str) -> float:
  found = re.findall(r"\\boxed\{([^{}]*)\}", text)
  return float(bool(found) and found[-1].strip() == gold.strip())


def test_a_round_adds_corrupted_copies_graded_by_their_answer(tmp_path, rl_parent_run):
  from dsmath.rl.loop import RLLoop
  over = {"reward_model.corrupted_fraction": 0.5, "reward_model.questions": 8, "reward_model.heldout_questions": 8,
          "rollout.max_new_tokens": 24}
  loop = RLLoop(rl.resolve_rl_config(config("grpo_orm_toy", rl_parent_run, **over)), tmp_path)
  try:
    state = loop._fresh_state(loop._initial_params())
    rows, metrics = loop.rm.new_rows(state, 0, loop.cfg.seed)
    heldout, _ = loop.rm.new_rows(state, 0, loop.cfg.seed, split="heldout")
    tok, task = loop.rl.tokenizer, loop.rl.task
  finally:
    loop.checkpointer.close()
    loop.rl.close()
  n, extra = 16, int(metrics["rows_corrupted"])
  assert metrics["rows_new"] == n and 0 < extra <= 8 and len(rows["label"]) == n + extra, metrics
  assert sum(metrics[f"rows_corrupted_{k}"] for k in ("drop_step", "suffix", "prefix")) == extra
  assert len(heldout["label"]) == 16  # held-out rows measure the model on the policy's own samples only
  sample_tokens = [rows["completion"][r, :int(rows["mask"][r].sum())].tolist() for r in range(n)]
  labels = []
  for r in range(n, n + extra):
    toks = rows["completion"][r, :int(rows["mask"][r].sum())].tolist()
    # a copy of one sample of the same question and prompt: a proper suffix, a prefix + EOS, or a step removed
    sources = [s for s in range(n) if rows["question"][s, 0] == rows["question"][r, 0]
               and np.array_equal(rows["prompt"][s], rows["prompt"][r])]
    assert sources, r
    def is_copy(src):
      return (len(toks) < len(src) and (toks == src[len(src) - len(toks):] or (toks[:-1] == src[:len(toks) - 1]
                                                                                and toks[-1] == tok.eos_id)
                                        or any(toks == src[:i] + src[j:] for i in range(len(src))
                                               for j in range(i + 1, len(src)))))
    assert any(is_copy(sample_tokens[s]) for s in sources), (r, tok.decode(toks))
    gold = task.train[int(rows["question"][r, 0])].answer
    assert rows["label"][r, 0] == _boxed_verdict(tok.decode(toks), gold), (tok.decode(toks), gold)
    labels.append(rows["label"][r, 0])
  assert metrics["corrupted_label_mean"] == pytest.approx(np.mean(labels))
