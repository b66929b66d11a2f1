"""The RL stage's jitted optimizer steps: the policy on any of losses.POLICY_LOSSES, and PPO's value model."""
import jax
import jax.numpy as jnp

from dsmath.rl import losses, policy
from dsmath.train import build_step_fn


def make_policy_step(model_cfg, optimizer, method: str, loss_cfg: losses.LossConfig, temperature: float):
  """jit(state, batch) -> (state, metrics): one optimizer step on POLICY_LOSSES[method] plus entropy."""
  loss = losses.POLICY_LOSSES[method]

  def loss_fn(params, batch, rng):
    logp, ent = policy.completion_logprobs(model_cfg, params, batch["prompt"], batch["prompt_mask"],
                                           batch["completion"], batch["mask"], temperature)
    value, metrics = loss(loss_cfg, logp, batch)
    m = batch["mask"]
    metrics["entropy"] = (ent * m).sum() / jnp.maximum(m.sum(), 1.0)
    return value, metrics

  return jax.jit(build_step_fn(optimizer, loss_fn), donate_argnums=(0,))


def make_value_step(model_cfg, optimizer, loss_cfg: losses.LossConfig):
  def loss_fn(params, batch, rng):
    values = policy.completion_scalars(model_cfg, params, batch["prompt"], batch["prompt_mask"], batch["completion"],
                                       batch["mask"], before_token=True)
    return losses.ppo_value_loss(loss_cfg, values, batch)

  return jax.jit(build_step_fn(optimizer, loss_fn), donate_argnums=(0,))
