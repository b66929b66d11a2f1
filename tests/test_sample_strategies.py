"""Decoding strategies against the truncated softmax they claim to sample from (chi-square, fixed seeds)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from dsmath.sample import STRATEGIES, Greedy, Temperature, TopK, TopP, strategy_from_config

PROBS = np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.03, 0.02])
N_DRAWS = 20000


def _draw(strategy, logits, seed=0, n=N_DRAWS):
  batch = jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (n, len(logits)))
  keys = jax.random.split(jax.random.key(seed), n)
  tokens, logprobs = jax.jit(strategy)(batch, keys)
  return np.asarray(tokens), np.asarray(logprobs)


def _truncated_softmax(logits, temperature, keep):
  z = np.exp(logits / temperature - np.max(logits / temperature)) * keep
  return z / z.sum()


CASES = [
    # (strategy, kept mask): top-k keeps the k largest; top-p keeps the smallest prefix whose mass reaches p.
    (TopK(3), [1, 1, 1, 0, 0, 0, 0, 0]),
    (TopK(5, temperature=0.5), [1, 1, 1, 1, 1, 0, 0, 0]),
    (TopP(0.75), [1, 1, 1, 1, 0, 0, 0, 0]),  # mass before the 5th token is 0.77 >= 0.75
    (TopP(0.5, temperature=2.0), None),  # kept set computed from the tempered distribution below
    (Temperature(0.7), [1] * 8),
]


@pytest.mark.parametrize("strategy,keep", CASES, ids=[repr(c[0]) for c in CASES])
def test_empirical_distribution_matches_truncated_softmax(strategy, keep):
  logits = np.log(PROBS)
  t = strategy.temperature
  if keep is None:
    tempered = _truncated_softmax(logits, t, np.ones(8))
    keep = (np.cumsum(tempered) - tempered < strategy.p).astype(float)
  keep = np.asarray(keep, float)
  expected = _truncated_softmax(logits, t, keep)
  tokens, logprobs = _draw(strategy, logits)
  counts = np.bincount(tokens, minlength=8)
  assert counts[keep == 0].sum() == 0, f"truncated tokens were sampled: {counts}"
  kept = keep == 1
  chi2 = stats.chisquare(counts[kept], expected[kept] * N_DRAWS)
  assert chi2.pvalue > 1e-3, (counts, expected * N_DRAWS)
  # The same counts are far from the untruncated / untempered softmax (the test has power).
  if not kept.all() or t != 1.0:
    wrong = stats.chisquare(counts, PROBS * N_DRAWS)
    assert wrong.pvalue < 1e-6
  # Returned log-probs are those of the truncated softmax.
  np.testing.assert_allclose(logprobs, np.log(expected[tokens]), atol=1e-5)
  # sampling_logits describes the same distribution.
  got = jax.nn.softmax(strategy.sampling_logits(jnp.asarray(logits, jnp.float32)[None]))[0]
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)


def test_greedy_is_argmax_with_zero_logprob():
  logits = jax.random.normal(jax.random.key(3), (16, 50))
  tokens, logprobs = Greedy()(logits, jax.random.split(jax.random.key(0), 16))
  np.testing.assert_array_equal(tokens, np.argmax(logits, -1))
  np.testing.assert_array_equal(logprobs, 0.0)


def test_seeded_and_reproducible():
  logits = np.log(PROBS)
  a, _ = _draw(Temperature(1.0), logits, seed=5, n=64)
  b, _ = _draw(Temperature(1.0), logits, seed=5, n=64)
  c, _ = _draw(Temperature(1.0), logits, seed=6, n=64)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()


def test_bad_parameters_and_config():
  with pytest.raises(ValueError, match="temperature"):
    Temperature(0.0)
  with pytest.raises(ValueError, match="k >= 1"):
    TopK(0)
  with pytest.raises(ValueError, match="0 < p <= 1"):
    TopP(1.5)
  assert strategy_from_config({"name": "top_p", "p": 0.9, "temperature": 0.6}) == TopP(0.9, 0.6)
  assert strategy_from_config({"name": "greedy"}) == Greedy()
  with pytest.raises(KeyError, match="must be one of"):
    strategy_from_config({"name": "beam"})
  with pytest.raises(KeyError, match=r"unknown key\(s\) \['q'\]"):
    strategy_from_config({"name": "top_k", "k": 3, "q": 1})
  assert set(STRATEGIES) == {"greedy", "temperature", "top_k", "top_p"}
