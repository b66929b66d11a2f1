"""Training losses: `loss_fn(params, batch, rng) -> (loss, metrics)`, the shape every train step accepts.

A loss may put `loss_weight` (a scalar) in its metrics: with gradient accumulation the micro-batch losses and
gradients are averaged with these weights (the token count here, so the accumulated loss is the exact token-mean of
the whole batch). Without it every micro-batch weighs 1.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dsmath import model
from dsmath.model import ModelConfig

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]


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


def next_token_loss(cfg: ModelConfig) -> LossFn:
  """Cross-entropy of batch["targets"] given batch["inputs"] (packed: segment_ids, positions), token-mean over
  batch["loss_mask"]; logits and the loss are float32 whatever the compute dtype."""
  def loss_fn(params: dict, batch: dict, rng: jax.Array):
    del rng  # the decoder has no dropout
    logits = model.logits(cfg, params, batch["inputs"], batch["segment_ids"], batch["positions"])
    return masked_token_mean_nll(logits, batch["targets"], batch["loss_mask"])
  return loss_fn
