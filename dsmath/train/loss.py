"""Training losses: `loss_fn(params, batch, rng) -> (loss, metrics)`, the shape every train step accepts.

A loss may put `loss_weight` (a scalar) in its metrics: with gradient accumulation the micro-batch losses and
gradients are averaged with these weights (the token count here, so the accumulated loss is the exact token-mean of
the whole batch). Without it every micro-batch weighs 1.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dsmath import model
from dsmath.model import ModelConfig

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]

# Rows (batch x tokens) of logits materialised at once by the fused LM head + cross-entropy.
HEAD_CHUNK_ROWS = 1024


def masked_token_mean_nll(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, dict]:
  """logits [B, T, V], targets [B, T] int, loss_mask [B, T] -> (mean NLL over masked tokens, metrics), in float32."""
  logits = logits.astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  mask = loss_mask.astype(jnp.float32)
  tokens = mask.sum()
  loss = (nll * mask).sum() / jnp.maximum(tokens, 1.0)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  accuracy = (correct * mask).sum() / jnp.maximum(tokens, 1.0)
  return loss, {"accuracy": accuracy, "loss_weight": tokens}


def _head_chunk(h, t, w, inv_temp: float = 1.0):
  """One chunk of the LM head: h [B, C, H], targets t [B, C], w [H, V] -> (z = logits / T float32 [B, C, V],
  row max m, exp(z - m), lse, the target's z [B, C], is_target [B, C, V]). The target is an iota compare, not a
  gather (whose transpose would be a scatter-add over the logits)."""
  z = jnp.einsum("bch,hv->bcv", h, w, preferred_element_type=jnp.float32)
  if inv_temp != 1.0:
    z = z * inv_temp
  m = jnp.max(z, axis=-1)
  e = jnp.exp(z - m[..., None])
  lse = m + jnp.log(jnp.sum(e, axis=-1))
  is_target = jax.lax.broadcasted_iota(jnp.int32, z.shape, 2) == t[..., None]
  return z, m, e, lse, jnp.sum(jnp.where(is_target, z, 0.0), axis=-1), is_target


def _chunks(x, c):
  """[B, T, ...] -> [T // c, B, c, ...] (batch stays the sharded leading dim of every chunk)."""
  return jnp.swapaxes(x.reshape(x.shape[0], x.shape[1] // c, c, *x.shape[2:]), 0, 1)


def _unchunk(x):
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def _chunk_len(batch: int, length: int, rows: int) -> int:
  """The largest divisor c of length with batch * c <= rows (at least 1)."""
  return max([c for c in range(1, length + 1) if length % c == 0 and batch * c <= rows] or [1])


def _head_nll_forward(hidden, w, targets, weights, chunk, with_grads):
  """Scans token chunks; with_grads also returns d(sum weights * nll)/d(hidden, w), computed while each logits chunk
  is live (the loss is linear in its cotangent, so the backward only scales them)."""
  def body(dw, xs):
    h, t, wt = xs
    logits, m, _, lse, target, is_target = _head_chunk(h, t, w)
    nll = lse - target
    # argmax as the first index reaching the max: a plain min-reduce, much cheaper than a variadic (value, index) one.
    vocab = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 2)
    first_max = jnp.min(jnp.where(logits == m[..., None], vocab, logits.shape[-1]), axis=-1)
    correct = (first_max == t).astype(jnp.float32)
    if not with_grads:
      return dw, (nll, correct)
    dlogits = (jnp.exp(logits - lse[..., None]) - is_target) * wt[..., None]
    dlogits = dlogits.astype(w.dtype)
    dh = jnp.einsum("bcv,hv->bch", dlogits, w, preferred_element_type=jnp.float32).astype(h.dtype)
    dw = dw + jnp.einsum("bch,bcv->hv", h, dlogits, preferred_element_type=jnp.float32)
    return dw, (nll, correct, dh)

  dw0 = jnp.zeros(w.shape, jnp.float32)
  dw, outs = jax.lax.scan(body, dw0, (_chunks(hidden, chunk), _chunks(targets, chunk), _chunks(weights, chunk)))
  return dw, tuple(_unchunk(o) for o in outs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_head_nll(hidden, w, targets, weights, chunk):
  _, (nll, correct) = _head_nll_forward(hidden, w, targets, weights, chunk, with_grads=False)
  return jnp.sum(nll * weights), jnp.sum(correct * weights)


def _fused_head_nll_fwd(hidden, w, targets, weights, chunk):
  dw, (nll, correct, dh) = _head_nll_forward(hidden, w, targets, weights, chunk, with_grads=True)
  return (jnp.sum(nll * weights), jnp.sum(correct * weights)), (dh, dw.astype(w.dtype), nll, correct)


def _fused_head_nll_bwd(chunk, res, cts):
  del chunk
  dh, dw, nll, correct = res
  g_nll, g_correct = cts
  return (dh * g_nll.astype(dh.dtype), dw * g_nll.astype(dw.dtype), None, g_nll * nll + g_correct * correct)


_fused_head_nll.defvjp(_fused_head_nll_fwd, _fused_head_nll_bwd)


def lm_head_nll(cfg: ModelConfig, params: dict, hidden: jax.Array, targets: jax.Array, loss_mask: jax.Array,
                chunk_rows: int = HEAD_CHUNK_ROWS) -> tuple[jax.Array, dict]:
  """`masked_token_mean_nll(model.lm_head(cfg, params, hidden), targets, loss_mask)` without ever holding the whole
  [B, T, V] logits: the LM head and the cross-entropy run together over chunks of about `chunk_rows` tokens, and
  the gradient of each chunk is formed while its logits are live (exact: no recomputation, no approximation).

  hidden [B, T, H], targets [B, T] int, loss_mask [B, T] -> (loss, {"accuracy", "loss_weight"}), float32.
  """
  w = model.head_weight(cfg, params).astype(cfg.dtype)
  hidden = hidden.astype(cfg.dtype)
  mask = loss_mask.astype(jnp.float32)
  chunk = _chunk_len(hidden.shape[0], hidden.shape[1], chunk_rows)
  nll_sum, correct_sum = _fused_head_nll(hidden, w, jnp.asarray(targets, jnp.int32), mask, chunk)
  tokens = mask.sum()
  denom = jnp.maximum(tokens, 1.0)
  return nll_sum / denom, {"accuracy": correct_sum / denom, "loss_weight": tokens}


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _fused_head_logprobs(hidden, w, targets, chunk, inv_temp):
  def body(_, xs):
    z, _, e, lse, target, _ = _head_chunk(*xs, w, inv_temp)
    return None, (target - lse, lse - jnp.sum(e * z, axis=-1) / jnp.sum(e, axis=-1))  # log-prob, entropy
  _, outs = jax.lax.scan(body, None, (_chunks(hidden, chunk), _chunks(targets, chunk)))
  return tuple(_unchunk(o) for o in outs)


def _fused_head_logprobs_fwd(hidden, w, targets, chunk, inv_temp):
  logp, entropy = _fused_head_logprobs(hidden, w, targets, chunk, inv_temp)
  return (logp, entropy), (hidden, w, targets, entropy)


def _fused_head_logprobs_bwd(chunk, inv_temp, res, cts):
  """Recomputes each chunk's logits (one extra head matmul) instead of keeping [B, T, V] of them alive."""
  hidden, w, targets, entropy = res
  g_logp, g_ent = cts

  def body(dw, xs):
    h, t, ent, gl, ge = xs
    z, _, _, lse, _, is_target = _head_chunk(h, t, w, inv_temp)
    p = jnp.exp(z - lse[..., None])
    # d logp / dz = onehot - p;  d entropy / dz = -p (log p + entropy) = -p (z - lse + entropy)
    dz = gl[..., None] * (is_target - p) - ge[..., None] * p * (z - lse[..., None] + ent[..., None])
    dlogits = (dz * inv_temp).astype(w.dtype)
    dh = jnp.einsum("bcv,hv->bch", dlogits, w, preferred_element_type=jnp.float32).astype(h.dtype)
    return dw + jnp.einsum("bch,bcv->hv", h, dlogits, preferred_element_type=jnp.float32), dh

  xs = tuple(_chunks(x, chunk) for x in (hidden, targets, entropy, g_logp, g_ent))
  dw, dh = jax.lax.scan(body, jnp.zeros(w.shape, jnp.float32), xs)
  return _unchunk(dh), dw.astype(w.dtype), None


_fused_head_logprobs.defvjp(_fused_head_logprobs_fwd, _fused_head_logprobs_bwd)


def lm_head_logprobs(cfg: ModelConfig, params: dict, hidden: jax.Array, targets: jax.Array, temperature: float = 1.0,
                     chunk_rows: int = HEAD_CHUNK_ROWS) -> tuple[jax.Array, jax.Array]:
  """log softmax(lm_head(hidden) / temperature) at `targets`, and the entropy of that distribution, per token, without
  ever holding the whole [B, T, V] logits (RL's policy log-probs: at the 7B vocabulary, 64 x 1024 completion tokens
  would be 27 GB of float32 logits). Chunks of about `chunk_rows` tokens; the backward recomputes each chunk's logits.
  Differentiable in both outputs (exact gradients, no approximation).

  hidden [B, T, H], targets [B, T] int -> (logp [B, T], entropy [B, T]) float32.
  """
  w = model.head_weight(cfg, params).astype(cfg.dtype)
  hidden = hidden.astype(cfg.dtype)
  chunk = _chunk_len(hidden.shape[0], hidden.shape[1], chunk_rows)
  return _fused_head_logprobs(hidden, w, jnp.asarray(targets, jnp.int32), chunk, 1.0 / float(temperature))


def next_token_loss(cfg: ModelConfig) -> LossFn:
  """Cross-entropy of batch["targets"] given batch["inputs"] (packed: segment_ids, positions), token-mean over
  batch["loss_mask"]; logits and the loss are float32 whatever the compute dtype. Equal to
  `masked_token_mean_nll(model.logits(...), ...)`, computed by the chunked `lm_head_nll`."""
  def loss_fn(params: dict, batch: dict, rng: jax.Array):
    del rng  # the decoder has no dropout
    hidden = model.hidden_states(cfg, params, batch["inputs"], batch["segment_ids"], batch["positions"])
    return lm_head_nll(cfg, params, hidden, batch["targets"], batch["loss_mask"])
  return loss_fn
