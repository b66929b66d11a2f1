"""Decoding strategies: small frozen dataclasses sharing one interface (gemma / levanter style).

Every strategy maps next-token logits [B, V] and one PRNG key per row [B] to (tokens [B] int32, log-probs [B]
float32), the log-probability of each chosen token under the strategy's own sampling distribution (after temperature
and truncation). `sampling_logits` exposes that distribution (truncated entries are -inf) so callers can score
tokens teacher-forced. Strategies are hashable, so they can be static arguments of jitted functions.
"""
import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp


_BLOCK = 128  # vocabulary block of the two-level inverse-CDF draw


def _first_reaching(cdf: jax.Array, mass: jax.Array, target: jax.Array) -> jax.Array:
  """Per row, the first index whose cdf reaches target among entries with positive mass; the last positive entry
  when rounding leaves target above every cdf. cdf, mass [B, N]; target [B] -> [B] int32."""
  positive = mass > 0
  hit = (cdf >= target[:, None]) & positive
  last = mass.shape[-1] - 1 - jnp.argmax(positive[:, ::-1], axis=-1)
  return jnp.where(jnp.any(hit, axis=-1), jnp.argmax(hit, axis=-1), last).astype(jnp.int32)


def _categorical(keys: jax.Array, logits: jax.Array) -> jax.Array:
  """One draw per row from softmax(logits), each row with its own key (a row's draw does not depend on the batch).

  Inverse CDF with one uniform per row, in two levels (which 128-token block, then which token in it): on CPU this is
  about 10x cheaper than jax.random.categorical's Gumbel noise over the whole vocabulary (one random number and two
  logs per token), or a cumsum over it. Tokens with probability 0 (truncated by top-k/top-p) are never drawn.
  """
  b, v = logits.shape
  u = 1.0 - jax.vmap(lambda k: jax.random.uniform(k, ()))(keys)  # in (0, 1]
  probs = jax.nn.softmax(logits, axis=-1)
  probs = jnp.pad(probs, ((0, 0), (0, -v % _BLOCK))).reshape(b, -1, _BLOCK)
  block_mass = jnp.sum(probs, axis=-1)
  block_cdf = jnp.cumsum(block_mass, axis=-1)
  target = u * block_cdf[:, -1]
  block = _first_reaching(block_cdf, block_mass, target)
  rows = jnp.arange(b)
  within = probs[rows, block]  # [B, _BLOCK]
  rest = target - (block_cdf[rows, block] - block_mass[rows, block])
  token = block * _BLOCK + _first_reaching(jnp.cumsum(within, axis=-1), within, rest)
  return token.astype(jnp.int32)


def chosen_logprob(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """logits [B, V], tokens [B] -> log softmax(logits)[b, tokens[b]] [B]."""
  return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]


class _Sampled:
  """Shared sampling path: draw from softmax(sampling_logits)."""

  def sampling_logits(self, logits: jax.Array) -> jax.Array:
    raise TypeError(f"{type(self).__name__} must define sampling_logits")

  def scaled(self, logits: jax.Array) -> jax.Array:
    """float32 logits divided by the strategy's temperature (validated in __post_init__)."""
    return logits.astype(jnp.float32) / self.temperature

  def __call__(self, logits: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits [B, V], keys [B] -> (tokens [B] int32, log-probs [B] under the sampling distribution)."""
    processed = self.sampling_logits(logits.astype(jnp.float32))
    tokens = _categorical(keys, processed)
    return tokens, chosen_logprob(processed, tokens)


def _check_temperature(t: float):
  if not t > 0:
    raise ValueError(f"temperature must be > 0 (use Greedy() for argmax decoding), got {t}")


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Argmax. Its sampling distribution is a point mass, so the returned log-prob is 0."""

  def sampling_logits(self, logits: jax.Array) -> jax.Array:
    logits = logits.astype(jnp.float32)
    top = jnp.argmax(logits, axis=-1)
    return jnp.where(jnp.arange(logits.shape[-1]) == top[:, None], 0.0, -jnp.inf)

  def __call__(self, logits: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    del keys
    tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return tokens, jnp.zeros(tokens.shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Temperature(_Sampled):
  """Ancestral sampling from softmax(logits / temperature)."""
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)

  def sampling_logits(self, logits: jax.Array) -> jax.Array:
    return self.scaled(logits)


@dataclasses.dataclass(frozen=True)
class TopK(_Sampled):
  """Sampling restricted to the k most likely tokens (ties at the k-th value are kept)."""
  k: int
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)
    if self.k < 1:
      raise ValueError(f"top-k needs k >= 1, got {self.k}")

  def sampling_logits(self, logits: jax.Array) -> jax.Array:
    scaled = self.scaled(logits)
    k = min(self.k, scaled.shape[-1])
    kth = jax.lax.top_k(scaled, k)[0][:, -1:]
    return jnp.where(scaled >= kth, scaled, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class TopP(_Sampled):
  """Nucleus sampling: the smallest set of most likely tokens whose probability mass reaches p."""
  p: float
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)
    if not 0.0 < self.p <= 1.0:
      raise ValueError(f"top-p needs 0 < p <= 1, got {self.p}")

  def sampling_logits(self, logits: jax.Array) -> jax.Array:
    scaled = self.scaled(logits)
    desc = -jnp.sort(-scaled, axis=-1)
    probs = jax.nn.softmax(desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < self.p  # always keeps the most likely token
    threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(scaled >= threshold, scaled, -jnp.inf)


STRATEGIES = {"greedy": Greedy, "temperature": Temperature, "top_k": TopK, "top_p": TopP}


def strategy_from_config(config: Mapping[str, Any]):
  """{'name': 'top_p', 'p': 0.95, 'temperature': 0.7} -> TopP(0.95, 0.7); names are the keys of STRATEGIES."""
  config = dict(config)
  name = config.pop("name", None)
  if name not in STRATEGIES:
    raise KeyError(f"sampling strategy config key 'name' must be one of {sorted(STRATEGIES)}, got {name!r}")
  cls = STRATEGIES[name]
  valid = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(config) - valid)
  if unknown:
    raise KeyError(f"unknown key(s) {unknown} for sampling strategy {name!r}; valid keys: {sorted(valid)}")
  return cls(**config)
