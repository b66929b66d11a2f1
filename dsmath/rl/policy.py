"""Per-token log-probs, entropies and scalar heads of (prompt, completion) rows, from dsmath.model.

Row layout used by the whole RL package: prompt tokens left-padded to P (prompt_mask 1 on real tokens) followed by
completion tokens right-padded to C (completion_mask 1 on real tokens, including the EOS). Padding gets segment id 0
and real tokens segment 1, with positions counting real tokens only, so a row's numbers do not depend on its padding.
"""
import jax
import jax.numpy as jnp

from dsmath import model
from dsmath.train.loss import lm_head_logprobs


def _rows(prompt, prompt_mask, completion, completion_mask):
  tokens = jnp.concatenate([prompt, completion], axis=1).astype(jnp.int32)
  real = jnp.concatenate([prompt_mask, completion_mask], axis=1).astype(jnp.int32)
  positions = jnp.maximum(jnp.cumsum(real, axis=1) - 1, 0)
  return tokens, real, positions


def completion_logprobs(model_cfg: model.ModelConfig, params, prompt: jax.Array, prompt_mask: jax.Array,
                        completion: jax.Array, completion_mask: jax.Array,
                        temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """log pi(o_t | q, o_<t) and the policy's entropy at each completion position.

  Args:
    prompt, prompt_mask: [B, P] (left-padded).  completion, completion_mask: [B, C] (right-padded).
    temperature: the sampling temperature (log-probs of the distribution the rollout sampled from).
  Returns:
    (logp [B, C], entropy [B, C]) float32, zero where completion_mask is 0.
  """
  tokens, real, positions = _rows(prompt, prompt_mask, completion, completion_mask)
  p, c = prompt.shape[1], completion.shape[1]
  hidden = model.hidden_states(model_cfg, params, tokens[:, :-1], segment_ids=real[:, :-1],
                               positions=positions[:, :-1])
  # Position P-1+t predicts completion token t: only those positions go through the LM head (the prompt's would
  # cost P / (P + C) of the head's FLOPs and memory for logits nobody reads), in chunks (`lm_head_logprobs`).
  logp, entropy = lm_head_logprobs(model_cfg, params, hidden[:, p - 1:p - 1 + c], completion, temperature)
  m = completion_mask.astype(jnp.float32)
  return logp * m, entropy * m


def init_scalar_head(model_cfg: model.ModelConfig, rng: jax.Array) -> dict:
  """A fresh transformer plus a linear scalar head on its hidden states (value model / reward model)."""
  k1, k2 = jax.random.split(rng)
  return {"body": model.init_params(model_cfg, k1),
          "head": {"w": jax.random.normal(k2, (model_cfg.hidden_size,), jnp.float32) * 0.01,
                   "b": jnp.zeros((), jnp.float32)}}


def scalar_head_from_policy(policy_params, rng: jax.Array, hidden_size: int) -> dict:
  """A scalar-head model whose body starts from a policy (the usual init of PPO critics and reward models)."""
  return {"body": policy_params,
          "head": {"w": jax.random.normal(rng, (hidden_size,), jnp.float32) * 0.01, "b": jnp.zeros((), jnp.float32)}}


def completion_scalars(model_cfg: model.ModelConfig, head_params: dict, prompt: jax.Array, prompt_mask: jax.Array,
                       completion: jax.Array, completion_mask: jax.Array, before_token: bool = False) -> jax.Array:
  """The scalar head read at every completion token: [B, C] (step scores for reward models, values for PPO).

  before_token=False: the score at token t sees the prompt and o_<=t (reward models score a step after its end token).
  before_token=True: it sees o_<t only, V(s_t) of the state in which o_t is chosen (PPO's value for GAE).
  """
  tokens, real, positions = _rows(prompt, prompt_mask, completion, completion_mask)
  hidden = model.hidden_states(model_cfg, head_params["body"], tokens, segment_ids=real, positions=positions)
  start = prompt.shape[1] - 1 if before_token else prompt.shape[1]
  h = hidden[:, start:start + completion.shape[1]].astype(jnp.float32)
  out = h @ head_params["head"]["w"] + head_params["head"]["b"]
  return out * completion_mask.astype(jnp.float32)


def last_token_scalar(scores: jax.Array, completion_mask: jax.Array) -> jax.Array:
  """scores [B, C] -> [B], the score at each row's last completion token (an outcome reward model's output)."""
  last = jnp.maximum(completion_mask.astype(jnp.int32).sum(axis=1) - 1, 0)
  return jnp.take_along_axis(scores, last[:, None], axis=1)[:, 0]
