"""The LLaMA-style decoder as Flax Linen modules, layers under nn.scan.

Every parameter carries logical axis names (see `dsmath.model.sharding`); activations are constrained by logical
names too, so the same code runs on one CPU or a (data, fsdp, tensor) mesh.

Architecture switches of the config (q/k/v biases, per-head q/k RMSNorm, tied embeddings, the RoPE schedule) are
read while tracing: with them off, the traced program is the one the DeepSeek/LLaMA-2 decoder always had.

Attention masking is by segment ids and per-segment positions: a query attends to a key iff both are in the same
segment and the key's position is not after the query's. This one rule covers packed pre-training rows, padded
prompts and the KV cache (empty cache slots hold segment 0, which no real token has).
"""
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dsmath.model.config import ModelConfig
from dsmath.model.rope import inv_frequencies, rope

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything": jax.checkpoint_policies.everything_saveable,
}

_NEG_INF = -1e30  # finite, so a row with nothing to attend to (padding) gives a uniform row, not NaN


def _param(module, name, shape, axes, dtype, scale):
  init = nn.with_logical_partitioning(nn.initializers.normal(stddev=scale), axes)
  return module.param(name, init, shape, jnp.dtype(dtype))


def _bias(module, name, shape, axes, dtype):
  init = nn.with_logical_partitioning(nn.initializers.zeros, axes)
  return module.param(name, init, shape, jnp.dtype(dtype))


def attention_mask(q_segment: jax.Array, q_pos: jax.Array, kv_segment: jax.Array, kv_pos: jax.Array) -> jax.Array:
  """[B, T, S] bool: same segment and key position <= query position."""
  same = q_segment[:, :, None] == kv_segment[:, None, :]
  causal = kv_pos[:, None, :] <= q_pos[:, :, None]
  return same & causal


def _masked_scores(q, k, mask, spec: str = "btkgd,bskd->bkgts"):
  """q [B, T, K, G, D], k [B, S, K, D] (or [B, K, S, D] with spec "btkgd,bksd->bkgts"), mask [B, T, S] -> float32
  scores [B, K, G, T, S], masked ones -1e30."""
  scores = jnp.einsum(spec, q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
  return jnp.where(mask[:, None, None], scores, _NEG_INF)


@jax.custom_vjp
def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """softmax(q k^T / sqrt(D), masked) v. q [B, T, K, G, D] (G query heads per KV head), k, v [B, S, K, D],
  mask [B, T, S] bool -> [B, T, K, G, D].

  Its backward keeps only the softmax's row max and row sum (as flash attention does) and recomputes the
  probabilities from q and k, instead of storing every layer's [B, K, G, T, S] probabilities for the backward:
  exact, and much less memory traffic.
  """
  return _attention_fwd(q, k, v, mask)[0]


def _attention_fwd(q, k, v, mask):
  scores = _masked_scores(q, k, mask)
  m = jnp.max(scores, axis=-1, keepdims=True)
  e = jnp.exp(scores - m)
  l = jnp.sum(e, axis=-1, keepdims=True)
  # Normalise after the matmul: a [B, T, K, G, D] division instead of a pass over [B, K, G, T, S].
  out = jnp.einsum("bkgts,bskd->btkgd", e.astype(v.dtype), v, preferred_element_type=jnp.float32)
  out = (out / _to_btkg(l)).astype(v.dtype)
  return out, (q, k, v, mask, out, m, l)


def _to_btkg(x):
  """[B, K, G, T, 1] -> [B, T, K, G, 1]."""
  return jnp.moveaxis(x, 3, 1)


def _attention_bwd(res, dout):
  q, k, v, mask, out, m, l = res
  e = jnp.exp(_masked_scores(q, k, mask) - m)  # probabilities = e / l, exactly the forward's
  inv_l = 1.0 / l
  dout32 = dout.astype(jnp.float32)
  # 1 / l folded into the small operands, so no pass over [B, K, G, T, S] forms the probabilities themselves.
  dv = jnp.einsum("bkgts,btkgd->bskd", e.astype(v.dtype), (dout32 * _to_btkg(inv_l)).astype(v.dtype))
  dprobs = jnp.einsum("btkgd,bskd->bkgts", dout, v, preferred_element_type=jnp.float32)
  # sum_s probs * dprobs == dout . out: a [B, T, K, G] reduction instead of one over [B, K, G, T, S].
  delta = jnp.einsum("btkgd,btkgd->bkgt", dout32, out.astype(jnp.float32))[..., None]
  dscores = jnp.where(mask[:, None, None], e * (dprobs - delta) * (inv_l * q.shape[-1] ** -0.5), 0.0)
  dq = jnp.einsum("bkgts,bskd->btkgd", dscores.astype(q.dtype), k).astype(q.dtype)
  dk = jnp.einsum("bkgts,btkgd->bskd", dscores.astype(q.dtype), q).astype(k.dtype)
  return dq, dk, dv.astype(v.dtype), None


masked_attention.defvjp(_attention_fwd, _attention_bwd)


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, block: int) -> jax.Array:
  """`masked_attention` for an index-causal mask (no key after its query's index), skipping the blocks above the
  diagonal: query block [i * block, (i + 1) * block) attends only keys [0, (i + 1) * block). With 4 blocks that is
  62.5% of the dense score matrix; exact, since every skipped entry is masked anyway.

  q [B, T, K, G, D], k, v [B, T, K, D], mask [B, T, T] -> [B, T, K, G, D].
  """
  t = q.shape[1]
  if block <= 0 or t <= block:
    return masked_attention(q, k, v, mask)
  outs = []
  for lo in range(0, t, block):
    hi = min(t, lo + block)
    outs.append(masked_attention(q[:, lo:hi], k[:, :hi], v[:, :hi], mask[:, lo:hi, :hi]))
  return jnp.concatenate(outs, axis=1)


def cached_attention(q, k_cache, v_cache, mask_cache, k_new=None, v_new=None, mask_new=None):
  """Attention over a KV cache, plus (optionally) new tokens not yet in it, one softmax over both (no concatenated
  copy of the cache).

  q [B, T, K, G, D]; k_cache, v_cache [B, K, S, D] (heads before slots: each (row, head) then reads one contiguous
  [S, D] block, several times faster on CPU than the [B, S, K, D] layout), mask_cache [B, T, S];
  k_new, v_new [B, T, K, D], mask_new [B, T, T] -> [B, T, K, G, D].
  """
  # (scores, values, the probabilities-times-values einsum) per part
  parts = [(_masked_scores(q, k_cache, mask_cache, "btkgd,bksd->bkgts"), v_cache, "bkgts,bksd->btkgd")]
  if k_new is not None:
    parts.append((_masked_scores(q, k_new, mask_new), v_new, "bkgts,bskd->btkgd"))
  m = functools.reduce(jnp.maximum, [jnp.max(s, axis=-1, keepdims=True) for s, _, _ in parts])
  e = [jnp.exp(s - m) for s, _, _ in parts]
  l = sum(jnp.sum(x, axis=-1, keepdims=True) for x in e)
  return sum(jnp.einsum(spec, (x / l).astype(v.dtype), v) for x, (_, v, spec) in zip(e, parts))


class RMSNorm(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (x.shape[-1],),
                       jnp.dtype(self.cfg.param_dtype))
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.cfg.rms_norm_eps)
    return (x32 * scale).astype(self.cfg.dtype)


class Attention(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, layer_cache, cache_index=None):
    """x: [B, T, H] -> (out [B, T, H], kv).

    No cache: mask [B, T, T]; kv None. layer_cache {k, v: [B, KV, S, D]} with cache_index: the new tokens' k/v are
    written at slots [cache_index, +T) first, then attended with the rest (mask [B, T, S]); kv is the updated cache.
    layer_cache without cache_index (scanned layers): the cache is only read, mask = (over the cache [B, T, S], over
    the new tokens [B, T, T]); kv is the new tokens' {k, v: [B, KV, T, D]}, for the caller to write once for all
    layers (a write inside the layer scan made XLA copy the whole stacked cache on every decode step).
    """
    c = self.cfg
    h, n, kvn, d = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
    std = h ** -0.5
    dt = jnp.dtype(c.dtype)
    if self.has_variable("params", "qkv"):  # the decode layout (`dsmath.model.decode_params`): one matmul
      qkv = jnp.einsum("bth,hnd->btnd", x, self.get_variable("params", "qkv").astype(dt))
      if c.qkv_bias:
        qkv = qkv + self.get_variable("params", "qkv_bias").astype(dt)
      q, k, v = jnp.split(qkv, [n, n + kvn], axis=2)
    else:
      wq = _param(self, "q", (h, n, d), ("embed", "heads", "head_dim"), c.param_dtype, std)
      wk = _param(self, "k", (h, kvn, d), ("embed", "kv_heads", "head_dim"), c.param_dtype, std)
      wv = _param(self, "v", (h, kvn, d), ("embed", "kv_heads", "head_dim"), c.param_dtype, std)
      q = jnp.einsum("bth,hnd->btnd", x, wq.astype(dt))
      k = jnp.einsum("bth,hnd->btnd", x, wk.astype(dt))
      v = jnp.einsum("bth,hnd->btnd", x, wv.astype(dt))
      if c.qkv_bias:
        q = q + _bias(self, "q_bias", (n, d), ("heads", "head_dim"), c.param_dtype).astype(dt)
        k = k + _bias(self, "k_bias", (kvn, d), ("kv_heads", "head_dim"), c.param_dtype).astype(dt)
        v = v + _bias(self, "v_bias", (kvn, d), ("kv_heads", "head_dim"), c.param_dtype).astype(dt)
    wo = _param(self, "o", (n, d, h), ("heads", "head_dim", "embed"), c.param_dtype, (n * d) ** -0.5)
    if c.qk_norm:  # over each head's D features, one scale [D] shared by the heads (Qwen3)
      q, k = RMSNorm(c, name="q_norm")(q), RMSNorm(c, name="k_norm")(k)
    inv_freq = inv_frequencies(c)
    q = nn.with_logical_constraint(rope(q, positions, inv_freq), ("batch", "length", "act_heads", "head_dim"))
    k = rope(k, positions, inv_freq)

    b, t = q.shape[:2]
    q = q.reshape(b, t, kvn, n // kvn, d)  # grouped heads share one KV head
    if layer_cache is None:
      out, kv = causal_attention(q, k, v, mask, c.attention_block), None
    else:
      new = {"k": jnp.swapaxes(k, 1, 2).astype(layer_cache["k"].dtype),
             "v": jnp.swapaxes(v, 1, 2).astype(layer_cache["v"].dtype)}
      if cache_index is not None:
        kv = {n_: jax.lax.dynamic_update_slice_in_dim(layer_cache[n_], new[n_], cache_index, 2) for n_ in new}
        out = cached_attention(q, kv["k"].astype(dt), kv["v"].astype(dt), mask)
      else:
        kv = new
        out = cached_attention(q, layer_cache["k"].astype(dt), layer_cache["v"].astype(dt), mask[0],
                               jnp.swapaxes(new["k"], 1, 2).astype(dt), jnp.swapaxes(new["v"], 1, 2).astype(dt),
                               mask[1])
    out = jnp.einsum("btnd,ndh->bth", out.reshape(b, t, n, d), wo.astype(dt))
    return out, kv


class MLP(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    h, m = c.hidden_size, c.intermediate_size
    dt = jnp.dtype(c.dtype)
    gate = _param(self, "gate", (h, m), ("embed", "mlp"), c.param_dtype, h ** -0.5)
    up = _param(self, "up", (h, m), ("embed", "mlp"), c.param_dtype, h ** -0.5)
    down = _param(self, "down", (m, h), ("mlp", "embed"), c.param_dtype, m ** -0.5)
    # One matmul for gate and up: its backward is one weight-gradient matmul over [gate | up] instead of two (and
    # stacking, not concatenating, keeps the "mlp" dim's tensor sharding aligned).
    gu = jnp.einsum("bth,hcm->btcm", x, jnp.stack([gate, up], axis=1).astype(dt))
    g, u = gu[:, :, 0], gu[:, :, 1]
    y = nn.with_logical_constraint(nn.silu(g) * u, ("batch", "length", "act_mlp"))
    return jnp.einsum("btm,mh->bth", y, down.astype(dt))


class Block(nn.Module):
  """Pre-norm decoder layer; the scan carry is the residual stream."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, layer_cache, positions, mask, cache_index=None):
    attn_out, new_cache = Attention(self.cfg, name="attn")(RMSNorm(self.cfg, name="attn_norm")(x), positions, mask,
                                                           layer_cache, cache_index)
    x = x + attn_out
    x = x + MLP(self.cfg, name="mlp")(RMSNorm(self.cfg, name="mlp_norm")(x))
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    return x, new_cache


class Transformer(nn.Module):
  """tokens [B, T] -> final-normed hidden states [B, T, H] (and the updated cache).

  The LM head is applied by `dsmath.model.api.lm_head` so callers can project only the positions they need.
  Layers run under nn.scan (params "layers", stacked [L, ...]), or unrolled when the cache holds one array per layer
  (params "layer_0" ... from `dsmath.model.decode_params`): on CPU a scan step copies the layer's slice of the
  stacked params and cache, which dominates a decode step; unrolled layers read their own buffers.
  """
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens, positions, segment_ids, cache: Optional[dict] = None, cache_index=0):
    c = self.cfg
    # Tied, the table is the LM head too: initialised at the head's scale, so fresh logits are O(1).
    embed = _param(self, "embed", (c.vocab_size, c.hidden_size), ("vocab", "embed"), c.param_dtype,
                   c.hidden_size ** -0.5 if c.tie_embeddings else 1.0)
    if not c.tie_embeddings:  # declared here so init creates it; applied outside (see class docstring)
      _param(self, "lm_head", (c.hidden_size, c.vocab_size), ("embed", "vocab"), c.param_dtype, c.hidden_size ** -0.5)
    # Gather from a table replicated over vocab (a vocab-sharded gather would need an ambiguous output sharding) but
    # still sharded over its hidden dim: replicating the whole [V, H] table (and its gradient) on every device costs
    # 2 x 1.6 GiB at 7B.
    table = nn.with_logical_constraint(embed, (None, "embed"))
    x = jnp.take(table, tokens, axis=0).astype(c.dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

    # Index-causal too (no token sees a later one), which lets attention skip the blocks above the diagonal. Real
    # tokens are unaffected (positions grow along a segment); only padding rows, whose outputs nobody reads, change.
    t = tokens.shape[1]
    own_mask = attention_mask(segment_ids, positions, segment_ids, positions) & jnp.tri(t, dtype=bool)[None]
    if cache is None:
      x, _ = self._scanned_layers(x, None, positions, own_mask)
      return RMSNorm(c, name="final_norm")(x), None
    put = lambda buf, new, axis: jax.lax.dynamic_update_slice_in_dim(buf, new, cache_index, axis)
    seg, pos = put(cache["segment_ids"], segment_ids, 1), put(cache["positions"], positions, 1)
    if isinstance(cache["k"], tuple):  # unrolled layers: params from `decode_params`, one cache array per layer
      mask = attention_mask(segment_ids, positions, seg, pos)
      k, v = [], []
      for l, (layer_k, layer_v) in enumerate(zip(cache["k"], cache["v"])):
        x, kv = Block(c, name=f"layer_{l}")(x, {"k": layer_k, "v": layer_v}, positions, mask, cache_index)
        k.append(kv["k"])
        v.append(kv["v"])
      k, v = tuple(k), tuple(v)
    else:  # scanned layers read the cache; the new tokens' k/v come back stacked [L, B, KV, T, D], written here
      slots = jnp.arange(cache["segment_ids"].shape[1])
      overwritten = (slots >= cache_index) & (slots < cache_index + tokens.shape[1])
      cached = attention_mask(segment_ids, positions, cache["segment_ids"], cache["positions"]) & ~overwritten
      x, new_kv = self._scanned_layers(x, {"k": cache["k"], "v": cache["v"]}, positions, (cached, own_mask))
      k, v = put(cache["k"], new_kv["k"], 3), put(cache["v"], new_kv["v"], 3)
    new_cache = {"k": k, "v": v, "segment_ids": seg, "positions": pos}
    return RMSNorm(c, name="final_norm")(x), new_cache

  def _scanned_layers(self, x, layer_caches, positions, mask):
    c = self.cfg
    block = nn.remat(Block, policy=REMAT_POLICIES[c.remat], prevent_cse=False) if c.remat != "none" else Block
    layers = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(0, nn.broadcast, nn.broadcast), length=c.num_layers,
                     metadata_params={nn.PARTITION_NAME: "layers"})
    return layers(c, name="layers")(x, layer_caches, positions, mask)
