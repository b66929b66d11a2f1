"""Continuous batching (dsmath.sample.continuous) against the static engine on the tiny preset: the same tokens, lengths
and finish reasons for the same keys (log-probs to float rounding) whatever the number of cache slots or the order
completions are refilled in; per-row budgets; the bfloat16 rollout option against float32 teacher forcing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model
from dsmath.sample import Greedy, TopP, continuous, engine, generate

CFG = model.ModelConfig.preset("tiny")
PROMPTS = [[5, 17, 33, 2, 9, 100, 7], [44], [300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312], [8, 9]]
N, MAX_NEW = 3, 24
SAMPLER = TopP(0.9, temperature=1.3)


@pytest.fixture(scope="module")
def params():
  return model.init_params(CFG, jax.random.key(0))


@pytest.fixture(scope="module")
def prompts():
  return engine.pad_prompts(PROMPTS)


@pytest.fixture(scope="module")
def ends(params, prompts):
  """Per strategy: EOS ids and a stop sequence (as an array, and as the list it was made from) that end the static
  engine's rows at different lengths (tokens the first sample of each prompt draws at steps 3, 9, 15 and 21)."""
  out = {}
  for strategy in (SAMPLER, Greedy()):
    tokens = np.asarray(engine.sample_arrays(CFG, params, *prompts, max_new_tokens=MAX_NEW, strategy=strategy,
                                             num_samples=N, rng=jax.random.key(7))["tokens"])
    stops = [tokens[1, 5:7].tolist()]
    out[strategy] = ([int(tokens[N * b, 3 + 6 * b]) for b in range(len(PROMPTS))], engine.stop_sequence_array(stops),
                     stops)
  return out


def _host(out):
  return {k: np.asarray(v) for k, v in out.items()}


def _sample(fn, params, prompts, ends, strategy, **kw):
  eos, stops, _ = ends[strategy]
  return _host(fn(CFG, params, *prompts, max_new_tokens=MAX_NEW, strategy=strategy, num_samples=N,
                  rng=jax.random.key(7), eos_id=eos, stop_seqs=stops, **kw))


def _continuous(params, prompts, ends, strategy, **kw):
  """Continuous batching with the tail decoded in 3 phases (5 slots: 5, then 2, then 1), whatever MAX_NEW."""
  return _sample(continuous.sample_arrays, params, prompts, ends, strategy, phases=3, **kw)


def _assert_same(out, ref, atol=1e-5):
  for k in ("tokens", "lengths", "reasons"):
    np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
  for k in ("logprobs", "model_logprobs"):
    np.testing.assert_allclose(out[k], ref[k], atol=atol, rtol=0, err_msg=k)


@pytest.mark.parametrize("strategy, slots", [(SAMPLER, 1), (SAMPLER, 5), (Greedy(), 5)])
def test_same_samples_as_the_static_engine_for_any_slot_count(params, prompts, ends, strategy, slots):
  ref = _sample(engine.sample_arrays, params, prompts, ends, strategy)
  assert len(set(ref["lengths"].tolist())) >= 3 and ref["lengths"].min() < MAX_NEW  # rows end at many lengths
  assert engine.EOS in ref["reasons"]
  out = _continuous(params, prompts, ends, strategy, slots=slots)
  _assert_same(out, ref)
  if slots == 1:  # one slot decodes the completions one after another, a step for each token after the first
    assert out["steps"] == int((ref["lengths"] - 1).sum())


def test_a_completion_draws_the_same_whatever_its_refill_order(params, prompts, ends):
  """Budgets cut some rows short: the others are refilled at other steps and into other slots, the cut rows keep
  their first tokens; a row offset shifts the keys as it does the static engine's."""
  full = _continuous(params, prompts, ends, SAMPLER, slots=5)
  budgets = np.random.default_rng(0).integers(1, MAX_NEW + 1, len(PROMPTS) * N).astype(np.int32)
  cut = _continuous(params, prompts, ends, SAMPLER, slots=5, budgets=budgets)
  assert cut["steps"] != full["steps"]
  for r, b in enumerate(budgets):
    n = min(b, full["lengths"][r])
    assert cut["lengths"][r] == n
    np.testing.assert_array_equal(cut["tokens"][r, :n], full["tokens"][r, :n])
    np.testing.assert_allclose(cut["model_logprobs"][r, :n], full["model_logprobs"][r, :n], atol=1e-5, rtol=0)
    assert cut["reasons"][r] == (full["reasons"][r] if n == full["lengths"][r] and b >= full["lengths"][r]
                                 else engine.LENGTH)
  static_cut = _sample(engine.sample_arrays, params, prompts, ends, SAMPLER, budgets=budgets)
  _assert_same(cut, static_cut)
  # generate passes the budgets on (the reward model's Math-Shepherd completions: one program for every chunk); the
  # static engine's programs above, run again
  eos, _, stop_list = ends[SAMPLER]
  gen = generate(CFG, params, PROMPTS, max_new_tokens=MAX_NEW, strategy=SAMPLER, num_samples=N, rng=jax.random.key(7),
                 eos_id=eos, stop_sequences=stop_list, batching="static", budgets=budgets)
  np.testing.assert_array_equal(gen.lengths, static_cut["lengths"])
  np.testing.assert_array_equal(gen.tokens, static_cut["tokens"])
  shifted = _continuous(params, prompts, ends, SAMPLER, slots=5, row_offset=N)
  _assert_same(shifted, _sample(engine.sample_arrays, params, prompts, ends, SAMPLER, row_offset=N))


def test_scanned_layers_equal_unrolled_layers(params, prompts, ends):
  ref = _continuous(params, prompts, ends, SAMPLER, slots=5)
  scanned = _continuous(params, prompts, ends, SAMPLER, slots=5, unroll_layers=False)
  _assert_same(scanned, ref)


def test_bfloat16_rollout_logprobs_close_to_float32(params, prompts):
  """compute_dtype="bfloat16": params and KV cache in bfloat16. The model log-probs it reports for its own tokens
  differ from float32 teacher forcing of the same tokens by a small amount (mean ~6e-3 here; float32: ~3e-7)."""
  out = _host(continuous.sample_arrays(CFG, params, *prompts, max_new_tokens=MAX_NEW, strategy=SAMPLER,
                                       num_samples=N, rng=jax.random.key(7), slots=5, compute_dtype="bfloat16",
                                       phases=3))
  assert out["tokens"].shape == (len(PROMPTS) * N, MAX_NEW) and (out["lengths"] == MAX_NEW).all()
  tokens, lengths = prompts
  seq = np.concatenate([np.repeat(tokens, N, 0), out["tokens"]], 1)
  pos = np.concatenate([np.repeat(np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape), N, 0),
                        np.repeat(lengths, N)[:, None] + np.arange(MAX_NEW)], 1)
  seg = np.concatenate([np.repeat(np.arange(tokens.shape[1])[None] < lengths[:, None], N, 0),
                        np.ones(out["tokens"].shape, bool)], 1).astype(np.int32)
  logp = jax.nn.log_softmax(model.logits(CFG, params, seq, segment_ids=seg, positions=pos), -1)
  # the completion token at column j is predicted at the position before it: the prompt's last token, then j - 1
  at = np.concatenate([np.repeat(lengths, N)[:, None] - 1, tokens.shape[1] + np.arange(MAX_NEW - 1)[None].repeat(
      len(seq), 0)], 1)
  ref = np.take_along_axis(np.take_along_axis(np.asarray(logp), at[:, :, None], 1), out["tokens"][:, :, None], 2)
  delta = np.abs(out["model_logprobs"] - ref[..., 0])
  assert 1e-4 < delta.mean() < 2e-2 and delta.max() < 0.1, (delta.mean(), delta.max())


def test_groups_hold_one_prefill_per_prompt():
  g = continuous.split_groups(1, 8, 4, 4)  # one prompt, G 8, 4 data-parallel groups: its KV goes to each group
  assert (g.groups, g.rows, g.slots, g.bank, g.own_prompts) == (4, 2, 1, 1, False)
  np.testing.assert_array_equal(g.bank_prompt, [0, 0, 0, 0])
  np.testing.assert_array_equal(g.bank_row, 0)
  g = continuous.split_groups(16, 64, 16, 256)  # the paper's step at 16-way data parallelism: a prompt a group
  assert (g.rows, g.slots, g.bank, g.own_prompts) == (64, 16, 1, True)  # the prefill's own rows: nothing moves
  np.testing.assert_array_equal(g.bank_prompt, np.arange(16))
  g = continuous.split_groups(3, 2, 4, 5)  # 6 rows over 4 groups: 2 padding rows, prompts spanning groups
  np.testing.assert_array_equal(g.valid, [1, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(g.completion_prompt, [0, 0, 1, 1, 2, 2, 2, 2])
  np.testing.assert_array_equal(g.bank_prompt, [0, 1, 2, 2])
  assert not g.own_prompts and continuous.split_groups(4, 3, 1, 5).own_prompts  # one device: its own prompts
  assert g.slots == 2 and continuous.phase_sizes(32, 512) == (32, 16, 8, 4) and continuous.phase_sizes(1, 512) == (1,)
  assert continuous.phase_sizes(32, 128) == (32, 16) and continuous.phase_sizes(32, 64) == (32,)
  assert continuous.phase_sizes(5, 24, phases=3) == (5, 2, 1)


def test_generate_batching_choice_and_bad_inputs(params):
  assert engine.choose_batching("auto", 64, None, True) == "continuous"  # 16 slots refilled
  assert engine.choose_batching("auto", 64, None, False) == "static"  # forced length: nothing to refill
  assert engine.choose_batching("auto", 16, None, True) == "static"  # every row has its own slot
  assert engine.choose_batching("static", 64, None, True) == "static"
  with pytest.raises(ValueError, match="batching must be one of"):
    generate(CFG, params, [[1, 2]], max_new_tokens=4, batching="paged")
  with pytest.raises(ValueError, match=r"budgets must be 2 integers in \[1, max_new_tokens=4\]"):
    continuous.sample_arrays(CFG, params, *engine.pad_prompts([[1, 2]]), max_new_tokens=4, strategy=Greedy(),
                             num_samples=2, rng=jax.random.key(0), budgets=[1, 5])
