"""Pure functions over (config, params): init, forward, logits, KV cache. The model's public face."""
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dsmath.model.config import ModelConfig
from dsmath.model.transformer import Transformer


def default_positions(tokens: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """Per-segment positions [B, T] for contiguous packed segments (restart at each segment change)."""
  t = tokens.shape[1]
  idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), tokens.shape)
  starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], 1)
  start_idx = jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)
  return idx - start_idx


def _inputs(tokens, segment_ids, positions):
  tokens = jnp.asarray(tokens, jnp.int32)
  segment_ids = jnp.ones_like(tokens) if segment_ids is None else jnp.asarray(segment_ids, jnp.int32)
  positions = default_positions(tokens, segment_ids) if positions is None else jnp.asarray(positions, jnp.int32)
  return tokens, segment_ids, positions


def _boxed_init(cfg: ModelConfig, rng: jax.Array):
  tokens = jnp.zeros((1, 1), jnp.int32)
  return Transformer(cfg).init(rng, tokens, tokens, tokens + 1)["params"]


def init_params(cfg: ModelConfig, rng: jax.Array) -> dict:
  """A fresh params pytree (plain arrays, float32 by default)."""
  return nn.unbox(_boxed_init(cfg, rng))


def abstract_params(cfg: ModelConfig) -> dict:
  """Shapes and dtypes of the params, allocating nothing."""
  return nn.unbox(jax.eval_shape(lambda: _boxed_init(cfg, jax.random.key(0))))


def param_logical_axes(cfg: ModelConfig) -> dict:
  """The params pytree with a PartitionSpec of logical axis names at each leaf."""
  return nn.get_partition_spec(jax.eval_shape(lambda: _boxed_init(cfg, jax.random.key(0))))


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


def hidden_states(cfg: ModelConfig, params: dict, tokens: jax.Array, segment_ids: Optional[jax.Array] = None,
                  positions: Optional[jax.Array] = None) -> jax.Array:
  """tokens [B, T] -> final-normed hidden states [B, T, H] (for LM heads, value heads, reward heads)."""
  tokens, segment_ids, positions = _inputs(tokens, segment_ids, positions)
  hidden, _ = Transformer(cfg).apply({"params": params}, tokens, positions, segment_ids)
  return hidden


def head_weight(cfg: ModelConfig, params: dict) -> jax.Array:
  """The LM head [H, V]: params["lm_head"], or the input embedding transposed when cfg.tie_embeddings."""
  return params["embed"].T if cfg.tie_embeddings else params["lm_head"]


def lm_head(cfg: ModelConfig, params: dict, hidden: jax.Array) -> jax.Array:
  """hidden [..., H] -> logits [..., V] in float32."""
  w = head_weight(cfg, params).astype(cfg.dtype)
  return jnp.einsum("...h,hv->...v", hidden, w, preferred_element_type=jnp.float32)


def logits(cfg: ModelConfig, params: dict, tokens: jax.Array, segment_ids: Optional[jax.Array] = None,
           positions: Optional[jax.Array] = None) -> jax.Array:
  """tokens [B, T] -> next-token logits [B, T, V] float32.

  segment_ids [B, T] (0 = padding) keep packed documents apart; positions [B, T] default to per-segment positions.
  """
  return lm_head(cfg, params, hidden_states(cfg, params, tokens, segment_ids, positions))


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None, unrolled: bool = False) -> dict:
  """An empty KV cache: k, v [L, B, KV, S, D] (unrolled: tuples of L arrays [B, KV, S, D], for params from
  `decode_params`); segment_ids, positions [B, S] (segment 0 marks an empty slot)."""
  dtype = jnp.dtype(dtype or cfg.dtype)
  shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)
  if unrolled:
    k, v = (tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers)) for _ in range(2))
  else:
    k, v = jnp.zeros((cfg.num_layers, *shape), dtype), jnp.zeros((cfg.num_layers, *shape), dtype)
  return {"k": k, "v": v, "segment_ids": jnp.zeros((batch, max_len), jnp.int32),
          "positions": jnp.zeros((batch, max_len), jnp.int32)}


@functools.partial(jax.jit, static_argnames="cfg")
def decode_params(cfg: ModelConfig, params: dict) -> dict:
  """The params layout CPU decoding runs on (a copy of the layer params): the stacked "layers" [L, ...] split into
  "layer_0" ... "layer_{L-1}", each layer's q, k, v projections joined into one "qkv" [H, N + 2 KV, D] (and their
  biases, with cfg.qkv_bias, into "qkv_bias" [N + 2 KV, D]).

  For an unrolled cache (`init_cache(..., unrolled=True)`): on CPU each scanned layer copies its slice of the stacked
  params and cache, a large share of a decode step's time; and one [H, N + 2 KV] matmul on a few rows runs ~1.6x
  faster than three. `dsmath.model.transformer.Attention` reads either layout.
  """
  out = {k: v for k, v in params.items() if k != "layers"}
  for l in range(cfg.num_layers):
    layer = jax.tree.map(lambda a: a[l], params["layers"])
    joined = ("q", "k", "v", "q_bias", "k_bias", "v_bias")
    attn = {k: v for k, v in layer["attn"].items() if k not in joined}
    attn["qkv"] = jnp.concatenate([layer["attn"]["q"], layer["attn"]["k"], layer["attn"]["v"]], axis=1)
    if cfg.qkv_bias:
      attn["qkv_bias"] = jnp.concatenate([layer["attn"][f"{n}_bias"] for n in "qkv"], axis=0)
    out[f"layer_{l}"] = dict(layer, attn=attn)
  return out


def is_decode_params(params: dict) -> bool:
  return "layer_0" in params


def forward_with_cache(cfg: ModelConfig, params: dict, tokens: jax.Array, positions: jax.Array,
                       segment_ids: jax.Array, cache: dict, cache_index: jax.Array) -> tuple[jax.Array, dict]:
  """Writes tokens [B, T] into cache slots [cache_index, cache_index + T) and returns (hidden [B, T, H], cache).

  Used for prefill (T = prompt length) and decode (T = 1). Queries see every cache slot of their own segment at a
  position not after theirs, so prompts of different lengths share one cache layout.
  """
  hidden, cache = Transformer(cfg).apply({"params": params}, jnp.asarray(tokens, jnp.int32),
                                         jnp.asarray(positions, jnp.int32), jnp.asarray(segment_ids, jnp.int32),
                                         cache, cache_index)
  return hidden, cache
