"""Rotary position embeddings: the frequency schedules (a registry keyed by HF's `rope_type`) and their application.

A schedule maps the model config to the inverse frequencies [D/2] float32, computed in the same order of float32
operations as HF transformers' `ROPE_INIT_FUNCTIONS` so imported checkpoints see the same angles.
  default   theta^(-2i/D) (LLaMA-2, DeepSeek, Qwen2.5, Qwen3; rope_theta sets theta)
  llama3    Llama 3.1 / 3.2: wavelengths above original_max_positions / low_freq_factor are stretched by `factor`,
            below original_max_positions / high_freq_factor kept, and smoothly interpolated in between
"""
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp


def _default(cfg: Any) -> jax.Array:
  d = cfg.head_dim
  return 1.0 / cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d)


def _llama3(cfg: Any) -> jax.Array:
  inv_freq = _default(cfg)
  factor, low, high = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
  old_context = cfg.rope_original_max_positions
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
  smooth = (old_context / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < old_context / high) & ~(wavelen > old_context / low)
  return jnp.where(medium, smoothed, scaled)


ROPE_TYPES: dict[str, Callable[[Any], jax.Array]] = {"default": _default, "llama3": _llama3}


def inv_frequencies(cfg: Any) -> jax.Array:
  """[head_dim / 2] float32 inverse frequencies of `cfg.rope_type`."""
  return ROPE_TYPES[cfg.rope_type](cfg)


def rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
  """Rotary embedding, HF's rotate-half layout. x: [B, T, N, D]; positions: [B, T]; inv_freq [D/2]."""
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)
