"""The KV-cache rollout engine against the model's full forward pass (no cache) on the tiny preset."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model
from dsmath.sample import Greedy, Temperature, TopP, engine, generate

CFG = model.ModelConfig.preset("tiny")
PROMPTS = [[5, 17, 33, 2, 9, 100, 7], [44], [300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312], [8, 9]]
WIDTH = 48  # fixed width for the no-cache reference, so it compiles once


@pytest.fixture(scope="module")
def params():
  return model.init_params(CFG, jax.random.key(0))


@functools.partial(jax.jit, static_argnums=0)
def _full_logits(cfg, params, tokens, length):
  """Full forward over right-padded tokens [W] (no cache) -> logits [W, V]."""
  seg = (jnp.arange(tokens.shape[0]) < length).astype(jnp.int32)
  return model.logits(cfg, params, tokens[None], segment_ids=seg[None])[0]


def _padded(seq):
  out = np.zeros((WIDTH,), np.int32)
  out[:len(seq)] = seq
  return out


def _reference_greedy(params, prompt, steps):
  seq = list(prompt)
  for _ in range(steps):
    logits = _full_logits(CFG, params, _padded(seq), len(seq))
    seq.append(int(jnp.argmax(logits[len(seq) - 1])))
  return seq[len(prompt):]


def _teacher_forced(params, prompt, completion, strategy):
  """(model log-probs, sampling log-probs) of `completion` after `prompt`, from one full forward pass."""
  seq = list(prompt) + list(completion)
  logits = _full_logits(CFG, params, _padded(seq), len(seq))[len(prompt) - 1:len(seq) - 1]
  model_lp = jax.nn.log_softmax(logits, -1)
  samp_lp = jax.nn.log_softmax(strategy.sampling_logits(logits), -1)
  idx = jnp.asarray(completion)[:, None]
  return (np.asarray(jnp.take_along_axis(model_lp, idx, -1)[:, 0]),
          np.asarray(jnp.take_along_axis(samp_lp, idx, -1)[:, 0]))


STEPS = 8
SAMPLER = TopP(0.9, temperature=1.3)  # exercises temperature and truncation; shared so tests reuse one compile


@pytest.fixture(scope="module")
def greedy(params):
  return generate(CFG, params, PROMPTS, max_new_tokens=STEPS)


@pytest.fixture(scope="module")
def sampled(params):
  return generate(CFG, params, PROMPTS, max_new_tokens=STEPS, num_samples=2, strategy=SAMPLER, rng=jax.random.key(7))


def test_greedy_equals_stepwise_argmax_of_full_forward(params, greedy):
  assert greedy.tokens.shape == (len(PROMPTS), STEPS)
  for b, prompt in enumerate(PROMPTS):
    assert greedy.tokens[b].tolist() == _reference_greedy(params, prompt, STEPS), f"prompt {b}"
  assert greedy.finish_reasons == ("length",) * len(PROMPTS)
  np.testing.assert_array_equal(greedy.lengths, STEPS)
  np.testing.assert_array_equal(greedy.logprobs, 0.0)  # greedy: point mass


def test_logprobs_equal_teacher_forced(params, greedy, sampled):
  for out, strategy in ((sampled, SAMPLER), (greedy, Greedy())):
    for r in range(out.tokens.shape[0]):
      n = int(out.lengths[r])
      model_lp, samp_lp = _teacher_forced(params, PROMPTS[out.prompt_index[r]], out.tokens[r, :n], strategy)
      np.testing.assert_allclose(out.model_logprobs[r, :n], model_lp, atol=1e-5, rtol=0)
      np.testing.assert_allclose(out.logprobs[r, :n], samp_lp, atol=1e-5, rtol=0)
  # N samples of one prompt share its prefill but draw different continuations.
  assert sampled.tokens.shape == (2 * len(PROMPTS), STEPS)
  assert (sampled.tokens[0] != sampled.tokens[1]).any()


def test_mixed_prompt_lengths_equal_each_prompt_alone(params, sampled):
  for b, prompt in enumerate(PROMPTS):
    # Row keys are fold_in(rng, row_offset + row): the lone prompt gets the row ids it had in the batch.
    alone = generate(CFG, params, [prompt], max_new_tokens=STEPS, strategy=SAMPLER, num_samples=2,
                     rng=jax.random.key(7), row_offset=2 * b)
    np.testing.assert_array_equal(alone.tokens, sampled.tokens[2 * b:2 * b + 2])
    np.testing.assert_allclose(alone.model_logprobs, sampled.model_logprobs[2 * b:2 * b + 2], atol=1e-5)
    np.testing.assert_allclose(alone.logprobs, sampled.logprobs[2 * b:2 * b + 2], atol=1e-5)
  # (Greedy: test_greedy_equals_stepwise_argmax_of_full_forward compares each batched row to its prompt alone.)


def test_scanned_layers_equal_unrolled_layers(params, sampled):
  """Accelerators decode with the stacked params under the layer scan (unroll_layers=False), CPU with per-layer params
  and cache arrays (the default there): same samples, same log-probs."""
  assert jax.default_backend() != "cpu" or engine.sampling_params(CFG, params) is not params
  scanned = generate(CFG, params, PROMPTS, max_new_tokens=STEPS, num_samples=2, strategy=SAMPLER,
                     rng=jax.random.key(7), unroll_layers=False)
  np.testing.assert_array_equal(scanned.tokens, sampled.tokens)
  np.testing.assert_allclose(scanned.model_logprobs, sampled.model_logprobs, atol=1e-5, rtol=0)
  np.testing.assert_allclose(scanned.logprobs, sampled.logprobs, atol=1e-5, rtol=0)


def test_eos_stop_sequences_and_early_exit(params, greedy):
  base = greedy.tokens
  eos = int(base[0, 3])
  stop = base[1, 4:6].tolist()
  out = generate(CFG, params, PROMPTS, max_new_tokens=STEPS, eos_id=eos, stop_sequences=[stop], pad_id=0)
  for b in range(len(PROMPTS)):
    row = base[b].tolist()
    ends = [i + 1 for i in range(STEPS) if row[i] == eos] + [i + 1 for i in range(1, STEPS) if row[i - 1:i + 1] == stop]
    n = min(ends + [STEPS])
    assert out.lengths[b] == n
    assert out.tokens[b, :n].tolist() == row[:n]
    np.testing.assert_array_equal(out.tokens[b, n:], 0)
    np.testing.assert_array_equal(out.model_logprobs[b, n:], 0.0)
    want = "length" if n not in ends else ("eos" if row[n - 1] == eos else "stop")
    assert out.finish_reasons[b] == want
  assert out.finish_reasons[0] == "eos" and out.lengths[0] <= 4
  assert out.finish_reasons[1] in ("eos", "stop") and out.lengths[1] <= 6
  # The loop exits as soon as every row has finished: every row's third token is an EOS here.
  tokens, lengths = engine.pad_prompts(PROMPTS)
  cache, logits = engine.prefill(CFG, params, tokens, lengths, cache_len=tokens.shape[1] + STEPS, num_samples=1)
  res = engine.decode(CFG, Greedy(), STEPS, params, cache, logits, jnp.asarray(lengths), jnp.int32(tokens.shape[1]),
                      jnp.zeros((4,), bool), engine.row_keys(jax.random.key(0), 4),
                      engine.stop_sequence_array([stop]), engine.eos_array(base[:, 2].tolist()), jnp.int32(0))
  assert int(res["steps"]) == 3
  np.testing.assert_array_equal(res["lengths"], 3)


def test_reproducible_and_bucketed(params, sampled):
  again = generate(CFG, params, PROMPTS, max_new_tokens=STEPS, num_samples=2, strategy=SAMPLER, rng=jax.random.key(7))
  other = generate(CFG, params, PROMPTS, max_new_tokens=STEPS, num_samples=2, strategy=SAMPLER, rng=jax.random.key(8))
  np.testing.assert_array_equal(again.tokens, sampled.tokens)
  assert (other.tokens != sampled.tokens).any()
  # Other prompt lengths in the same bucket (16) reuse the compiled prefill and decode.
  compiled = lambda: (engine.prefill._cache_size(), engine._decode_in_place._cache_size(),
                      engine._decode_growing._cache_size())
  sizes = compiled()
  generate(CFG, params, [[1, 2, 3], [4] * 11, [5] * 15, [6]], max_new_tokens=STEPS, num_samples=2, strategy=SAMPLER,
           rng=jax.random.key(5))
  assert compiled() == sizes


def test_cache_windows_change_nothing_but_speed(params):
  """Decoding through growing cache windows (attention reads only the slots that can be filled so far) samples the
  same tokens as one full-length cache, including rows that stop early inside a window and a loop that exits early;
  log-probs agree to float rounding (softmax sums over fewer empty slots)."""
  eos = int(generate(CFG, params, PROMPTS[:1], max_new_tokens=4).tokens[0, 3])  # greedy row 0 hits it at step 3
  outs = [generate(CFG, params, PROMPTS, max_new_tokens=40, num_samples=2, strategy=SAMPLER, rng=jax.random.key(3),
                   eos_id=eos, decode_segments=s) for s in (1, 3)]
  np.testing.assert_array_equal(outs[1].tokens, outs[0].tokens)
  np.testing.assert_array_equal(outs[1].lengths, outs[0].lengths)
  for field in ("logprobs", "model_logprobs"):
    np.testing.assert_allclose(getattr(outs[1], field), getattr(outs[0], field), rtol=0, atol=1e-5)
  assert outs[1].finish_reasons == outs[0].finish_reasons
  assert engine.decode_windows(64, 128, 4) == ((32, 96), (64, 128), (96, 160), (128, 192))
  assert engine.decode_windows(16, 2, 4) == ((1, 17), (2, 18))


def test_bad_inputs(params):
  with pytest.raises(ValueError, match="empty"):
    generate(CFG, params, [[1, 2], []], max_new_tokens=4)
  with pytest.raises(ValueError, match="rng"):
    generate(CFG, params, [[1, 2]], max_new_tokens=4, strategy=Temperature(1.0))
  with pytest.raises(ValueError, match="max_positions"):
    generate(CFG, params, [[1, 2]], max_new_tokens=CFG.max_positions)
  with pytest.raises(ValueError, match="stop_strings need a tokenizer"):
    generate(CFG, params, [[1, 2]], max_new_tokens=4, stop_strings=["```"])
  with pytest.raises(ValueError, match=r"stop_sequences\[0\] is empty"):
    generate(CFG, params, [[1, 2]], max_new_tokens=4, stop_sequences=[[]])
