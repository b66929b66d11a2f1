"""The rollout engine's static batch: prefill once per prompt, copy its KV-cache rows for N samples, one jitted
while_loop decode of all rows (`dsmath.sample.continuous` is its continuous-batching twin: fewer cache slots, refilled
as rows finish; `sample_step` is the sampling rule both share).

Cache layout (shared by every row, see dsmath.model.forward_with_cache): slots [0, P) hold the right-padded prompts
(pad slots have segment 0, so nobody attends to them); decode step i >= 1 writes the token sampled at step i - 1 at
slot `slot0 + i - 1` with per-row position `pos0 + i - 1`. A row's final token (EOS, stop, length, or the last one
before a pause) is never written: the cache always holds "context minus the pending token", which is what
`extend` (tool-integrated continuation) needs. Finished rows keep running through the loop with segment 0 writes
(invisible) until every row is done, then the loop exits.

The jitted cores (`prefill`, `extend`, `decode`) are pure functions of arrays with static shapes; `generate` is the
Python face that pads, buckets prompt lengths (powers of two), picks static or continuous batching and post-processes
stop strings.
"""
import contextlib
import dataclasses
import functools
from typing import TYPE_CHECKING, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.model import sharding
from dsmath.sample.strategies import Greedy, chosen_logprob

if TYPE_CHECKING:  # only encode/decode are used
  from dsmath.data.tokenizer import Tokenizer

FINISH_REASONS = ("running", "eos", "stop", "length")  # index = code returned by `decode`
RUNNING, EOS, STOP, LENGTH = range(4)
_NO_TOKEN = -2  # history filler before the first generated token; matches no stop-sequence entry
_NEVER = -3  # stop-sequence filler entry: matches neither a token nor _NO_TOKEN


@dataclasses.dataclass(frozen=True)
class SampleOutput:
  """R = num_prompts * num_samples rows, prompt-major: row r is sample r % N of prompt r // N.

  tokens [R, max_new] int32 (pad_id after `lengths`); logprobs [R, max_new] float32: log-prob of each token under the
  sampling distribution (0 for greedy, and after `lengths`); model_logprobs [R, max_new]: under the unmodified model
  (temperature 1, no truncation); lengths [R] (EOS and stop tokens included); finish_reasons: 'eos' | 'stop' |
  'length' per row; texts: decoded completions when a tokenizer was given.
  """
  tokens: np.ndarray
  logprobs: np.ndarray
  model_logprobs: np.ndarray
  lengths: np.ndarray
  finish_reasons: tuple
  num_samples: int
  texts: Optional[tuple] = None

  @property
  def prompt_index(self) -> np.ndarray:
    return np.arange(self.tokens.shape[0]) // self.num_samples


def bucket_length(n: int, minimum: int = 16) -> int:
  """Next power of two >= n (at least `minimum`): prompt shapes from a few buckets keep recompiles rare."""
  return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def stop_sequence_array(stop_sequences: Sequence[Sequence[int]]) -> np.ndarray:
  """Token-id stop sequences -> [n, L] int32, right-aligned with -1 (wildcard) on the left.

  n and L are bucketed (powers of two, at least 4) so different stop lists rarely recompile; filler rows hold a
  sentinel no token matches.
  """
  seqs = [list(map(int, s)) for s in stop_sequences]
  for j, s in enumerate(seqs):
    if not s:
      raise ValueError(f"stop_sequences[{j}] is empty")
    if min(s) < 0:
      raise ValueError(f"stop_sequences[{j}] has a negative token id: {s}")
  width = bucket_length(max([len(s) for s in seqs], default=1), 4)
  out = np.full((bucket_length(len(seqs), 4), width), -1, np.int32)
  out[len(seqs):, -1] = _NEVER
  for j, s in enumerate(seqs):
    out[j, width - len(s):] = s
  return out


def constrain_cache(cache: dict, batch: Optional[str] = "batch") -> dict:
  """Batch over the data axes (batch None: replicated over them) and KV heads over the tensor axis, as the attention
  that reads the cache (a no-op outside `sharding.activation_rules`)."""
  if isinstance(cache["k"], tuple):  # one array per layer
    kv = lambda a: tuple(nn.with_logical_constraint(x, (batch, "act_heads", None, None)) for x in a)  # noqa: E731
  else:
    kv = lambda a: nn.with_logical_constraint(a, ("layers", batch, "act_heads", None, None))  # noqa: E731
  return {"k": kv(cache["k"]), "v": kv(cache["v"]),
          "segment_ids": nn.with_logical_constraint(cache["segment_ids"], (batch, None)),
          "positions": nn.with_logical_constraint(cache["positions"], (batch, None))}


def decode_windows(slot0: int, max_new: int, segments: Optional[int] = None) -> tuple[tuple[int, int], ...]:
  """Splits a decode of max_new steps starting at cache slot slot0 into `segments` runs of steps; run j ends before
  step end_j and attends a cache of slot0 + end_j slots (enough for every token it writes). Returns
  ((end_j, cache length_j), ...); the last length is slot0 + max_new.

  segments None: one per 32 new tokens, at most 4. Each segment compiles its own copy of the decode loop, so short
  decodes keep one; beyond 4 the attention saved is small against the compile time.
  """
  n = max(1, min(4, max_new // 32)) if segments is None else max(1, min(segments, max_new))
  ends = sorted({-(-max_new * (j + 1) // n) for j in range(n)})
  return tuple((end, slot0 + end) for end in ends)


def _cache_slot_axes(cache: dict) -> dict:
  """The slot axis of every cache entry (k/v: [B, KV, S, D] per layer, or [L, B, KV, S, D]; the rest [B, S])."""
  kv = 2 if isinstance(cache["k"], tuple) else 3
  return {"k": kv, "v": kv, "segment_ids": 1, "positions": 1}


def _resize_cache(cache: dict, length: int) -> dict:
  """The first `length` slots of the cache, or the cache with empty slots (segment 0, zero k/v) appended."""
  def resize(a, axis):
    if length <= a.shape[axis]:
      return jax.lax.slice_in_dim(a, 0, length, axis=axis)
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, length - a.shape[axis])
    return jnp.pad(a, widths)
  return {name: jax.tree.map(lambda a, axis=axis: resize(a, axis), cache[name])
          for name, axis in _cache_slot_axes(cache).items()}


def _write_prefix(cache: dict, prefix: dict) -> dict:
  """`cache` with its first slots replaced by `prefix` (in place when the cache is donated)."""
  return {name: jax.tree.map(lambda a, p, axis=axis: jax.lax.dynamic_update_slice_in_dim(a, p, 0, axis),
                             cache[name], prefix[name])
          for name, axis in _cache_slot_axes(cache).items()}


def sampling_params(cfg: model.ModelConfig, params: dict, unroll_layers: Optional[bool] = None) -> dict:
  """The params the engine decodes with: `model.decode_params` (per layer, q/k/v joined; one extra copy of the layer
  params) when unroll_layers, which defaults to True on CPU, where a scanned decode step spends most of its time
  copying each layer's slice of the stacked params and KV cache; accelerators keep the stacked params (no extra
  memory)."""
  if unroll_layers is None:
    unroll_layers = jax.default_backend() == "cpu"
  if unroll_layers and not model.is_decode_params(params):
    return model.decode_params(cfg, params)
  return params


def rollout_params(cfg: model.ModelConfig, params: dict, unroll_layers: Optional[bool] = None,
                   compute_dtype: Optional[str] = None) -> tuple[model.ModelConfig, dict]:
  """The (config, params) a rollout decodes with: `sampling_params`, and with compute_dtype "bfloat16" the params
  cast and the activations and KV cache in bfloat16 (logits and log-probs stay float32); training keeps its own
  float32 params. None: the model config's dtype."""
  if compute_dtype is not None and compute_dtype != cfg.dtype:
    cfg = dataclasses.replace(cfg, dtype=compute_dtype)
    params = _cast(params, compute_dtype)
  return cfg, sampling_params(cfg, params, unroll_layers)


@functools.partial(jax.jit, static_argnums=1)
def _cast(params, dtype):
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, params)


@functools.partial(jax.jit, static_argnames=("cfg", "cache_len", "num_samples", "layout"))
def prefill(cfg: model.ModelConfig, params: dict, tokens: jax.Array, lengths: jax.Array, *, cache_len: int,
            num_samples: int, layout=None) -> tuple[dict, jax.Array]:
  """Right-padded prompts tokens [B, P], lengths [B] -> (cache of B * N rows with cache_len slots, next-token logits
  [B * N, V]). The prompt is run once; its cache rows and logits are repeated for the N samples.

  `layout` is only a jit-cache key (mesh, rules) so traces under different activation rules never mix.
  """
  del layout
  b, p = tokens.shape
  idx = jnp.arange(p, dtype=jnp.int32)
  segment_ids = (idx[None, :] < lengths[:, None]).astype(jnp.int32)
  positions = jnp.broadcast_to(idx, (b, p))
  unrolled = model.is_decode_params(params)
  cache = constrain_cache(model.init_cache(cfg, b, cache_len, unrolled=unrolled))
  hidden, cache = model.forward_with_cache(cfg, params, tokens, positions, segment_ids, cache, 0)
  last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]
  logits = model.lm_head(cfg, params, last)
  if num_samples > 1:
    kv_batch_axis = 0 if unrolled else 1
    cache = {"k": jax.tree.map(lambda a: jnp.repeat(a, num_samples, axis=kv_batch_axis), cache["k"]),
             "v": jax.tree.map(lambda a: jnp.repeat(a, num_samples, axis=kv_batch_axis), cache["v"]),
             "segment_ids": jnp.repeat(cache["segment_ids"], num_samples, axis=0),
             "positions": jnp.repeat(cache["positions"], num_samples, axis=0)}
    logits = jnp.repeat(logits, num_samples, axis=0)
  return constrain_cache(cache), nn.with_logical_constraint(logits, ("batch", None))


@functools.partial(jax.jit, static_argnames=("cfg", "layout"), donate_argnames=("cache",))
def extend(cfg: model.ModelConfig, params: dict, cache: dict, tokens: jax.Array, lengths: jax.Array,
           start_pos: jax.Array, slot: jax.Array, *, layout=None) -> tuple[dict, jax.Array]:
  """Appends right-padded tokens [R, A] (lengths [R], 0 = row not extended) at cache slot `slot`, positions
  start_pos + [0, A). Cached entries of a row at positions >= start_pos are dropped first (so a row can be rewound).
  Returns (cache, logits [R, V] after each row's last appended token; garbage for rows with length 0).
  """
  del layout
  r, a = tokens.shape
  extending = lengths > 0
  stale = extending[:, None] & (cache["positions"] >= start_pos[:, None])
  cache = dict(cache, segment_ids=jnp.where(stale, 0, cache["segment_ids"]))
  idx = jnp.arange(a, dtype=jnp.int32)
  segment_ids = (idx[None, :] < lengths[:, None]).astype(jnp.int32)
  positions = start_pos[:, None] + idx[None, :]
  hidden, cache = model.forward_with_cache(cfg, params, tokens, positions, segment_ids, cache, slot)
  last = jnp.take_along_axis(hidden, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
  return constrain_cache(cache), nn.with_logical_constraint(model.lm_head(cfg, params, last), ("batch", None))


def decode(cfg: model.ModelConfig, strategy, max_new: int, params: dict, cache: dict, logits: jax.Array,
           pos0: jax.Array, slot0: jax.Array, done: jax.Array, keys: jax.Array, stop_seqs: jax.Array,
           eos_ids: jax.Array, pad_id: jax.Array, budget: Optional[jax.Array] = None, *,
           windows: Optional[tuple] = None, layout=None) -> dict:
  """Samples up to max_new tokens for R rows in one lax.while_loop that exits when every row has finished.

  logits [R, V]: next-token logits (from prefill/extend); pos0 [R]: position of the first new token; slot0: first
  free cache slot; done [R] bool: rows that take no part; keys [R]: one PRNG key per row (step i uses
  fold_in(key, i)); stop_seqs [n, L] from `stop_sequence_array`; eos_ids [E] from `eos_array`; budget [R]: tokens
  each row may still generate (<= max_new; default max_new).
  windows (static, `decode_windows(s, max_new, n)` for some s >= slot0): run the steps in segments, each attending
  a cache only as long as the slots it can fill, grown with empty slots between segments, so attention reads ~ the
  filled part of the cache instead of all of it (and nothing more once every row has finished early). Either the
  cache has windows[0][1] slots (the returned cache has windows[-1][1]), or it is at least windows[-1][1] long and its
  later slots are empty (tool rounds: the windows run over its first slots, written back at the end). None: one loop
  over the whole cache.
  Returns dict(tokens, logprobs, model_logprobs [R, max_new], lengths [R], reasons [R] (FINISH_REASONS codes),
  steps (number of sampling steps run), cache).
  """
  # A cache returned at its own size is updated in place (donated); a growing one has nothing to donate.
  length = cache["segment_ids"].shape[1]
  if windows and windows[0][1] < length < windows[-1][1]:
    raise ValueError(f"decode windows {windows} neither start at the cache length {length} nor end within it")
  jitted = _decode_growing if windows and windows[-1][1] > length else _decode_in_place
  return jitted(cfg, strategy, max_new, params, cache, logits, pos0, slot0, done, keys, stop_seqs, eos_ids, pad_id,
                budget, windows=windows, layout=layout)


def sample_step(strategy, logits: jax.Array, keys: jax.Array, steps: jax.Array, window: jax.Array,
                active: jax.Array, budget: jax.Array, stop_seqs: jax.Array, eos_ids: jax.Array,
                pad_id: jax.Array) -> dict:
  """One sampling step for R rows, each at its own step: the rule both engines share, so a completion draws the same
  token whichever engine, batch or cache slot computes it.

  logits [R, V]; keys [R]: the row's own key (its step j draws with fold_in(key, j)); steps [R]: index j of the token
  being sampled; window [R, L - 1]: the row's previous L - 1 tokens (_NO_TOKEN before its first), L the width of
  stop_seqs [n, L]; active [R] bool (inactive rows sample pad_id and finish nothing); budget [R]: the row ends at
  token index budget - 1. Returns dict(token, logprob, model_logprob [R], finished [R] bool, reason [R]
  (FINISH_REASONS code, RUNNING unless finished), window [R, L - 1] ending at this token).
  """
  tok, lp = strategy(logits, jax.vmap(jax.random.fold_in)(keys, steps))
  lpm = chosen_logprob(logits.astype(jnp.float32), tok)
  tok = jnp.where(active, tok, pad_id)
  recent = jnp.concatenate([window, tok[:, None]], axis=1)  # the last L tokens, ending at this step
  matches = jnp.all((recent[:, None, :] == stop_seqs[None]) | (stop_seqs == -1)[None], axis=-1)
  hit_stop = active & jnp.any(matches, axis=-1)
  hit_eos = active & jnp.any(tok[:, None] == eos_ids[None, :], axis=-1)
  hit_len = active & (steps + 1 >= budget)
  reason = jnp.where(hit_eos, EOS, jnp.where(hit_stop, STOP, jnp.where(hit_len, LENGTH, RUNNING)))
  zero = lambda x: jnp.where(active, x, 0.0)  # noqa: E731
  return dict(token=tok, logprob=zero(lp), model_logprob=zero(lpm), finished=hit_eos | hit_stop | hit_len,
              reason=reason.astype(jnp.int32), window=recent[:, 1:])


def empty_window(rows: int, stop_seqs: jax.Array) -> jax.Array:
  """The `sample_step` window of a row before its first token: [rows, L - 1] of _NO_TOKEN."""
  return jnp.full((rows, stop_seqs.shape[1] - 1), _NO_TOKEN, jnp.int32)


def _decode(cfg, strategy, max_new, params, cache, logits, pos0, slot0, done, keys, stop_seqs, eos_ids, pad_id,
            budget=None, *, windows=None, layout=None) -> dict:
  del layout
  r = logits.shape[0]
  budget = jnp.full((r,), max_new, jnp.int32) if budget is None else budget

  def sample(i, logits, st):
    active = ~st["done"]
    out = sample_step(strategy, logits, keys, jnp.full((r,), i, jnp.int32), st["window"], active, budget, stop_seqs,
                      eos_ids, pad_id)
    put = lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x[:, None], i, 1)  # noqa: E731
    return dict(st, i=i + 1, window=out["window"], last=out["token"], tokens=put(st["tokens"], out["token"]),
                logprobs=put(st["logprobs"], out["logprob"]),
                model_logprobs=put(st["model_logprobs"], out["model_logprob"]),
                lengths=jnp.where(active, i + 1, st["lengths"]),
                reasons=jnp.where(out["finished"], out["reason"], st["reasons"]), done=st["done"] | out["finished"])

  def body(st):
    i = st["i"]
    # A row finished at step i - 1 writes its final token with segment 0: the cache keeps "context minus pending".
    seg = (~st["done"]).astype(jnp.int32)[:, None]
    pos = (pos0 + i - 1)[:, None]
    hidden, new_cache = model.forward_with_cache(cfg, params, st["last"][:, None], pos, seg, st["cache"],
                                                 slot0 + i - 1)
    step_logits = model.lm_head(cfg, params, hidden[:, 0])
    return sample(i, step_logits, dict(st, cache=constrain_cache(new_cache)))

  plan = windows or ((max_new, cache["segment_ids"].shape[1]),)
  full = None
  if plan[0][1] < cache["segment_ids"].shape[1]:  # windows over the first slots of a longer cache
    full, cache = cache, constrain_cache(_resize_cache(cache, plan[0][1]))
  init = dict(i=jnp.int32(0), cache=cache, window=empty_window(r, stop_seqs), last=jnp.zeros((r,), jnp.int32),
              tokens=jnp.full((r, max_new), pad_id, jnp.int32), logprobs=jnp.zeros((r, max_new), jnp.float32),
              model_logprobs=jnp.zeros((r, max_new), jnp.float32), lengths=jnp.zeros((r,), jnp.int32),
              reasons=jnp.zeros((r,), jnp.int32), done=done)
  st = sample(jnp.int32(0), logits, init)
  for j, (end, size) in enumerate(plan):
    if j:
      st = dict(st, cache=constrain_cache(_resize_cache(st["cache"], size)))
    st = jax.lax.while_loop(lambda s, end=end: (s["i"] < end) & ~jnp.all(s["done"]), body, st)
  cache = st["cache"] if full is None else constrain_cache(_write_prefix(full, st["cache"]))
  return dict(tokens=st["tokens"], logprobs=st["logprobs"], model_logprobs=st["model_logprobs"],
              lengths=st["lengths"], reasons=st["reasons"], steps=st["i"], cache=cache)


_DECODE_STATIC = ("cfg", "strategy", "max_new", "windows", "layout")
_decode_in_place = jax.jit(_decode, static_argnames=_DECODE_STATIC, donate_argnames=("cache",))
_decode_growing = jax.jit(_decode, static_argnames=_DECODE_STATIC)


# ---------------------------------------------------------------------------------------------------------------
# Python face


def pad_prompts(prompts, prompt_lengths=None, *, min_bucket: int = 16,
                pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """list of token lists, or (array [B, T], lengths [B]) -> (tokens [B, bucket(max len)] right-padded, lengths)."""
  if prompt_lengths is None:
    if isinstance(prompts, np.ndarray) or isinstance(prompts, jax.Array):
      arr = np.asarray(prompts)
      if arr.ndim != 2:
        raise ValueError(f"prompts array must be [B, T], got shape {arr.shape}")
      rows, lengths = list(arr), np.full((arr.shape[0],), arr.shape[1], np.int32)
    else:
      rows = [np.asarray(p, np.int32).reshape(-1) for p in prompts]
      lengths = np.asarray([len(p) for p in rows], np.int32)
  else:
    arr = np.asarray(prompts)
    lengths = np.asarray(prompt_lengths, np.int32).reshape(-1)
    if arr.ndim != 2 or arr.shape[0] != lengths.shape[0]:
      raise ValueError(f"prompts {arr.shape} and prompt_lengths {lengths.shape} disagree: need [B, T] and [B]")
    if lengths.max(initial=0) > arr.shape[1]:
      raise ValueError(f"prompt_lengths max {lengths.max()} exceeds the prompt width {arr.shape[1]}")
    rows = [arr[b, :lengths[b]] for b in range(arr.shape[0])]
  if len(rows) == 0:
    raise ValueError("prompts is empty")
  if lengths.min() < 1:
    raise ValueError(f"every prompt needs at least one token; prompt {int(np.argmin(lengths))} is empty")
  width = bucket_length(int(lengths.max()), min_bucket)
  out = np.full((len(rows), width), pad_id, np.int32)
  for b, row in enumerate(rows):
    out[b, :lengths[b]] = np.asarray(row)[:lengths[b]]
  return out, lengths


def data_parallel_size(mesh, rules) -> int:
  """Number of devices the batch axis is split over under `rules`."""
  spec = sharding.batch_sharding(mesh, rules).spec[0]
  axes = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
  return int(np.prod([mesh.shape[a] for a in axes])) if axes else 1


class Layout:
  """Where arrays live: one device (mesh None) or a mesh with logical rules; also the jit-cache key."""

  def __init__(self, mesh=None, rules=None):
    self.mesh = mesh
    self.rules = sharding.rules_from_config(rules if rules is not None else sharding.DEFAULT_RULES)
    self.key = None if mesh is None else (mesh, self.rules)
    self.dp = 1 if mesh is None else data_parallel_size(mesh, self.rules)

  def scope(self):
    return contextlib.nullcontext() if self.mesh is None else sharding.activation_rules(self.mesh, self.rules)

  # Explicit copies: the sampler moves host data to the device only here, on purpose. Host data is the same on every
  # process (a global array is built from it); a device array is resharded on the devices.
  def batch(self, x):
    return self._put(x, None if self.mesh is None else sharding.batch_sharding(self.mesh, self.rules, np.ndim(x)))

  def replicated(self, x):
    return self._put(x, None if self.mesh is None else sharding.replicated(self.mesh))

  @staticmethod
  def _put(x, sh):
    if sh is None:
      return jax.device_put(x)
    if isinstance(x, jax.Array):
      return x if x.sharding == sh else _reshard(x, sh)
    return sharding.global_array(x, sh)


@functools.partial(jax.jit, static_argnums=1)
def _reshard(x, sh):
  return jax.lax.with_sharding_constraint(x, sh)


def row_keys(rng: jax.Array, rows: int, offset: int = 0) -> jax.Array:
  """Key of row r = fold_in(rng, offset + r): a row's randomness does not depend on the other rows in its batch."""
  return _row_keys(rng, jax.device_put(np.int32(offset)), rows)


@functools.partial(jax.jit, static_argnums=2)
def _row_keys(rng, offset, rows):
  return jax.vmap(jax.random.fold_in, (None, 0))(rng, offset + jnp.arange(rows, dtype=jnp.int32))


def eos_array(eos_id) -> np.ndarray:
  """None, an id or a list of ids -> [E] int32 padded with -1 (never matches) to a power of two >= 4."""
  ids = [] if eos_id is None else [int(eos_id)] if np.isscalar(eos_id) else [int(e) for e in eos_id]
  out = np.full((bucket_length(len(ids), 4),), -1, np.int32)
  out[:len(ids)] = ids
  return out


def stop_string_sequences(tokenizer: "Tokenizer", stop_strings: Sequence[str]) -> list[list[int]]:
  """Token sequences that spell each stop string: its own encoding and its encoding after a newline (BPE merges
  differ by context). Other spellings are caught after decoding by `truncate_at_stop_strings`."""
  seqs = []
  newline = list(tokenizer.encode("\n"))
  for s in stop_strings:
    if not s:
      raise ValueError("stop_strings contains an empty string")
    variants = [list(tokenizer.encode(s))]
    joined = list(tokenizer.encode("\n" + s))
    if joined[:len(newline)] == newline and joined[len(newline):]:
      variants.append(joined[len(newline):])
    for v in variants:
      if v and v not in seqs:
        seqs.append(v)
  return seqs


def first_stop_prefix(tokenizer: "Tokenizer", ids: Sequence[int], stop_strings: Sequence[str]) -> Optional[int]:
  """Smallest k such that decode(ids[:k]) contains a stop string, or None (binary search: containment only grows)."""
  has = lambda k: any(s in tokenizer.decode(list(ids[:k])) for s in stop_strings)
  if not stop_strings or not has(len(ids)):
    return None
  lo, hi = 1, len(ids)
  while lo < hi:
    mid = (lo + hi) // 2
    if has(mid):
      hi = mid
    else:
      lo = mid + 1
  return lo


def check_sampling_args(max_new_tokens: int, num_samples: int, strategy, rng):
  """Validates the common arguments; returns the PRNG key to use."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  if rng is None:
    if not isinstance(strategy, Greedy):
      raise ValueError(f"strategy {strategy} samples: pass rng=jax.random.key(seed)")
    rng = jax.random.key(0)
  return rng


def prepare_prompts(cfg: model.ModelConfig, prompts, prompt_lengths, max_context: int, layout: Layout, *,
                    min_bucket: int = 16, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
  """Pads and buckets prompts, checks positions, adds dummy one-token prompts so the batch splits evenly over the
  data axes. Returns (tokens [B', P], lengths [B'], number of real prompts B)."""
  tokens, lengths = pad_prompts(prompts, prompt_lengths, min_bucket=min_bucket, pad_id=pad_id)
  if int(lengths.max()) + max_context > cfg.max_positions:
    raise ValueError(f"longest prompt ({int(lengths.max())}) + {max_context} new tokens (max_new_tokens, plus tool "
                     f"output blocks in tool mode) exceeds model.max_positions={cfg.max_positions}")
  num_prompts = tokens.shape[0]
  extra = -num_prompts % layout.dp
  if extra:
    tokens = np.concatenate([tokens, np.full((extra, tokens.shape[1]), pad_id, np.int32)])
    lengths = np.concatenate([lengths, np.ones((extra,), np.int32)])
  return tokens, lengths, num_prompts


def sample_arrays(cfg: model.ModelConfig, params: dict, tokens, lengths, *, max_new_tokens: int, strategy,
                  num_samples: int, rng: jax.Array, eos_id=None, pad_id: int = 0, stop_seqs=None,
                  layout: Optional[Layout] = None, row_offset: int = 0, unroll_layers: Optional[bool] = None,
                  decode_segments: Optional[int] = None, budgets=None, compute_dtype: Optional[str] = None) -> dict:
  """The device half of `generate` (static batch): right-padded prompts tokens [B, P] and lengths [B] (host or device
  arrays; B a multiple of the layout's data-parallel size) -> device arrays, nothing copied to the host: tokens,
  logprobs, model_logprobs [B * N, max_new], lengths, reasons [B * N] (FINISH_REASONS codes), prompt-major rows, and
  steps (decode steps run). budgets [B * N]: tokens each row may generate (default max_new_tokens); compute_dtype:
  see `rollout_params`. `dsmath.sample.continuous.sample_arrays` is the continuous-batching twin.

  The RL loop samples through this, so a rollout's tokens and log-probs stay on the device for the update."""
  layout = layout or Layout()
  stops = stop_sequence_array([]) if stop_seqs is None else stop_seqs
  b, p = tokens.shape
  rows = b * num_samples
  budget = None if budgets is None else layout.batch(check_budgets(budgets, rows, max_new_tokens))
  windows = decode_windows(p, max_new_tokens, decode_segments)
  cfg, params = rollout_params(cfg, params, unroll_layers, compute_dtype)
  with layout.scope():
    lengths = layout.batch(lengths)
    cache, logits = prefill(cfg, params, layout.batch(tokens), lengths, cache_len=windows[0][1],
                            num_samples=num_samples, layout=layout.key)
    out = decode(cfg, strategy, max_new_tokens, params, cache, logits,
                 jnp.repeat(lengths, num_samples) if num_samples > 1 else lengths, layout.replicated(np.int32(p)),
                 layout.batch(np.zeros((rows,), bool)),
                 layout.batch(_row_keys(rng, layout.replicated(np.int32(row_offset)), rows)),
                 layout.replicated(stops), layout.replicated(eos_array(eos_id)),
                 layout.replicated(np.int32(pad_id)), budget, windows=windows, layout=layout.key)
  return {k: out[k] for k in ("tokens", "logprobs", "model_logprobs", "lengths", "reasons", "steps")}


def check_budgets(budgets, rows: int, max_new_tokens: int) -> np.ndarray:
  """Per-row token budgets -> [rows] int32, each in [1, max_new_tokens]."""
  out = np.asarray(budgets).reshape(-1)
  if out.shape != (rows,) or not np.issubdtype(out.dtype, np.integer) or (out < 1).any() or \
      (out > max_new_tokens).any():
    raise ValueError(f"budgets must be {rows} integers in [1, max_new_tokens={max_new_tokens}], got "
                     f"{out.dtype} shape {out.shape}" + (f", range [{out.min()}, {out.max()}]" if out.size else ""))
  return out.astype(np.int32)


BATCHING = ("auto", "continuous", "static")


def default_slots(rows: int) -> int:
  """Continuous batching's cache slots when the caller names none: a quarter of the rows, at least 16 (fewer rows:
  all of them)."""
  return min(rows, max(16, rows // 4))


def choose_batching(batching: str, rows: int, slots: Optional[int], can_end_early: bool) -> str:
  """"auto" -> "continuous" when rows can end before max_new_tokens (an EOS id or stop sequences) and there are more
  rows than cache slots to refill (`continuous.default_slots` when slots is None), else "static"; other values pass
  through (validated)."""
  if batching not in BATCHING:
    raise ValueError(f"batching must be one of {BATCHING}, got {batching!r}")
  if batching != "auto":
    return batching
  refills = rows > (default_slots(rows) if slots is None else slots)
  return "continuous" if can_end_early and refills else "static"


def generate(cfg: model.ModelConfig, params: dict, prompts, *, max_new_tokens: int, strategy=Greedy(),
             num_samples: int = 1, eos_id=None, stop_sequences: Sequence[Sequence[int]] = (),
             stop_strings: Sequence[str] = (), tokenizer: Optional["Tokenizer"] = None, rng: Optional[jax.Array] = None,
             prompt_lengths=None, pad_id: int = 0, mesh=None, rules=None, min_bucket: int = 16,
             row_offset: int = 0, unroll_layers: Optional[bool] = None, decode_segments: Optional[int] = None,
             batching: str = "auto", slots: Optional[int] = None,
             compute_dtype: Optional[str] = None, budgets=None) -> SampleOutput:
  """Samples `num_samples` completions for each prompt.

  prompts: list of token-id lists, or an int array [B, T] (with prompt_lengths [B] when right-padded).
  eos_id: an id, a list of ids, or None (generate exactly max_new_tokens). stop_sequences: token-id sequences checked
  inside the jitted loop; stop_strings (need `tokenizer`): encoded into stop sequences and checked again on the
  decoded text, truncating a completion at the token that completes a stop string.
  rng: a jax PRNG key (required unless strategy is Greedy). mesh/rules: params stay as the caller placed them
  (e.g. sharded as in training); the batch is split over the data axes (padded to a multiple of their size).
  row_offset: row r draws with fold_in(rng, row_offset + r), so a batch split over several calls (or hosts) samples
  exactly what one call would. unroll_layers: see `sampling_params` (default: on CPU only).
  batching: "continuous" (`dsmath.sample.continuous`: `slots` cache rows, refilled as rows finish), "static" (every
  row decodes until the longest ends; decode_segments: how many cache windows it grows through, `decode_windows`), or
  "auto" (`choose_batching`). Both sample the same tokens for the same rng (log-probs equal to float rounding).
  compute_dtype: "bfloat16" decodes with bfloat16 params and cache (`rollout_params`). budgets [B * N] (prompt-major
  rows): tokens each completion may generate, each in [1, max_new_tokens] (default max_new_tokens for every row), so
  calls with different budgets can share one max_new_tokens, and one compiled program.
  """
  rng = check_sampling_args(max_new_tokens, num_samples, strategy, rng)
  if stop_strings and tokenizer is None:
    raise ValueError("stop_strings need a tokenizer")
  layout = Layout(mesh, rules)
  stop_list = list(stop_sequences) + (stop_string_sequences(tokenizer, stop_strings) if stop_strings else [])
  stops = stop_sequence_array(stop_list)
  tokens, lengths, num_prompts = prepare_prompts(cfg, prompts, prompt_lengths, max_new_tokens, layout,
                                                 min_bucket=min_bucket, pad_id=pad_id)
  keep = num_prompts * num_samples
  if budgets is not None:
    budgets = check_budgets(budgets, keep, max_new_tokens)
  common = dict(max_new_tokens=max_new_tokens, strategy=strategy, num_samples=num_samples, rng=rng, eos_id=eos_id,
                pad_id=pad_id, stop_seqs=stops, layout=layout, row_offset=row_offset, unroll_layers=unroll_layers,
                compute_dtype=compute_dtype)
  if choose_batching(batching, keep, slots, eos_id is not None or bool(stop_list)) == "continuous":
    from dsmath.sample import continuous  # it builds on this module
    out = continuous.sample_arrays(cfg, params, tokens[:num_prompts], lengths[:num_prompts], slots=slots,
                                   budgets=budgets, **common)
  else:  # the dummy prompts that even out the data axes: one token each
    if budgets is not None:
      budgets = np.concatenate([budgets, np.ones((tokens.shape[0] * num_samples - keep,), np.int32)])
    out = sample_arrays(cfg, params, tokens, lengths, decode_segments=decode_segments, budgets=budgets, **common)
  host = {k: sharding.host_array(out[k])[:keep].copy() for k in ("tokens", "logprobs", "model_logprobs", "lengths",
                                                                 "reasons")}
  texts = None
  if tokenizer is not None:
    if stop_strings:
      for r in range(keep):
        k = first_stop_prefix(tokenizer, host["tokens"][r, :host["lengths"][r]], stop_strings)
        if k is not None and k < host["lengths"][r]:
          host["tokens"][r, k:] = pad_id
          host["logprobs"][r, k:] = 0.0
          host["model_logprobs"][r, k:] = 0.0
          host["lengths"][r] = k
          host["reasons"][r] = STOP
        elif k is not None:
          host["reasons"][r] = STOP if host["reasons"][r] != EOS else EOS
    texts = tuple(tokenizer.decode(host["tokens"][r, :host["lengths"][r]].tolist()) for r in range(keep))
  return SampleOutput(tokens=host["tokens"], logprobs=host["logprobs"], model_logprobs=host["model_logprobs"],
                      lengths=host["lengths"], finish_reasons=tuple(FINISH_REASONS[c] for c in host["reasons"]),
                      num_samples=num_samples, texts=texts)
