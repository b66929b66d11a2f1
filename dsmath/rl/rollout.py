"""The RL rollout: completions of a step's questions sampled from the current policy, as device rows.

`RolloutSampler` is built once per run (by `dsmath.rl.step.RLStep`, as `rl_step.rollout`) from what sampling needs:
the rollout config section (`cfg.rollout`), the policy's model config, the task (its tokenizer and prompt arrays) and
the mesh layout (`engine.Layout`). It holds the task's prompt arrays on the device (replicated); a rollout gathers its
questions' rows there, samples with the KV-cache engine (params sharded as in training, the cache over batch and KV
heads) and returns `SampledRows`: the rows an update batch starts from, with each row's length and truncation flag,
all on the device. `texts` is the one device -> host copy: the completion tokens, decoded for the grader.

How a rollout decodes (rollout.batching, `RolloutSampler.batching`):
  continuous  all of a step's completions in one call through rollout.max_rows KV cache slots (default
              `engine.default_slots`, `rollout_slots`), each slot refilled with the next completion as soon as its
              row ends; every prompt is prefilled once at any data-parallel size (dsmath.sample.continuous)
  static      chunks of rollout.max_rows rows (whole questions), each decoded until its longest row ends
  auto        continuous where static batching wastes work: rows can end early and outnumber the slots, or the
              step's questions do not split over the data-parallel devices; else static
Tool-integrated rollouts (rollout.tool_rounds) are always static: their programs run on the host between decode
rounds (dsmath.sample.tools), so those rows come to the host and go back once; their rows hold `context_mask` (every
completion token the model reads: its own and the output blocks) beside `mask` (the tokens it wrote, the only ones a
loss trains on). Either way row r draws from fold_in(key, r): the samples do not depend on the batching or the chunks.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.model import sharding as msharding
from dsmath.rl.config import RolloutConfig
from dsmath.rl.tasks import Task
from dsmath.sample import continuous, engine
from dsmath.sample.strategies import Temperature
from dsmath.sample.tools import ToolConfig, generate_with_tools


def rollout_slots(max_rows: int, rows: int) -> int:
  """The KV cache slots a continuous rollout of `rows` completions decodes through: rollout.max_rows (at most the
  rows), or `engine.default_slots` when it is 0."""
  return min(max_rows, rows) if max_rows else engine.default_slots(rows)


@dataclasses.dataclass(frozen=True)
class SampledRows:
  """A rollout on the device, R rows prompt-major (the num_samples completions of each question in turn).

  rows       prompt, prompt_mask [R, P] (left-padded); completion, mask, old_logp [R, C] (right-padded; old_logp the
             sampler's log-probs, 0 off the mask); with tools also context_mask [R, C]. The dict an update batch
             starts from (the losses read these keys).
  lengths    [R] int32: completion tokens of each row (with tools: the model's and the output blocks').
  truncated  [R] bool: the row hit the token budget before it ended.
  """
  rows: dict
  lengths: jax.Array
  truncated: jax.Array


class RolloutSampler:
  """Samples an RL run's rollouts (see the module docstring). A plain class: its jitted methods take it as a static
  argument, hashed by identity."""

  def __init__(self, cfg: RolloutConfig, model_cfg: model.ModelConfig, task: Task, layout: engine.Layout):
    self.cfg, self.model_cfg, self.layout = cfg, model_cfg, layout
    self.tokenizer = task.tokenizer
    self.temperature = cfg.temperature
    self.completion_len = cfg.max_new_tokens  # tokens the model writes
    self.tools = ToolConfig(max_rounds=cfg.tool_rounds, max_output_tokens=cfg.tool_output_tokens,
                            timeout_s=cfg.tool_timeout_s, isolation=cfg.tool_isolation) if cfg.tool_rounds else None
    # the completion rows' width: the model's tokens plus, with tools, every output block it may read
    self.completion_width = self.completion_len + (
        self.tools.max_rounds * self.tools.max_output_tokens if self.tools else 0)
    if self.tools and jax.process_count() > 1:
      raise ValueError("rollout.tool_rounds: tool-integrated rollouts run their programs on one host; this run has "
                       f"{jax.process_count()} processes")
    if task.prompt_len + self.completion_width > model_cfg.max_positions:
      raise ValueError(f"prompt width {task.prompt_len} (task.prompt_budget) + rollout.max_new_tokens "
                       f"{self.completion_len} (+ rollout.tool_rounds x tool_output_tokens) exceed the model's "
                       f"max_positions={model_cfg.max_positions}")
    self._batch_sh = msharding.batch_sharding(layout.mesh, layout.rules)
    rep = msharding.replicated(layout.mesh)
    self.prompt_tokens = jax.device_put(task.prompt_tokens, rep)
    self.prompt_mask = jax.device_put(task.prompt_mask, rep)

  @functools.partial(jax.jit, static_argnums=(0,))
  def gather_prompts(self, prompt_tokens, prompt_mask, indices):
    """Left-padded prompt rows of `indices` and the same rows right-padded for the sampler, with lengths."""
    tokens, mask = prompt_tokens[indices], prompt_mask[indices]
    p = tokens.shape[1]
    lengths = mask.sum(axis=1).astype(jnp.int32)
    shift = (jnp.arange(p)[None, :] + (p - lengths)[:, None]) % p
    right = jnp.where(jnp.arange(p)[None, :] < lengths[:, None], jnp.take_along_axis(tokens, shift, axis=1),
                      self.tokenizer.pad_id)
    return tokens, mask, right, lengths

  def prompts(self, indices: np.ndarray) -> tuple:
    """(tokens, mask, right, lengths) of the task's questions `indices`, gathered on the device (`gather_prompts`)
    from the replicated prompt arrays: only the indices cross over."""
    return self.gather_prompts(self.prompt_tokens, self.prompt_mask,
                               self.layout.replicated(np.asarray(indices, np.int32)))

  def batching(self, prompts: int, num_samples: int) -> str:
    """How a rollout of num_samples completions of each of `prompts` questions decodes: "continuous" or "static"
    (rollout.batching; tool rounds: static). "auto" is continuous where static batching wastes work: more completions
    than cache slots (finished rows would keep decoding), or prompts that do not split over the data-parallel devices
    (static batching would prefill every completion's prompt)."""
    if self.tools is not None:
      return "static"
    rows = prompts * num_samples
    if self.cfg.batching == "auto" and prompts % self.layout.dp:
      return "continuous"
    return engine.choose_batching(self.cfg.batching, rows, rollout_slots(self.cfg.max_rows, rows),
                                  can_end_early=bool(self.tokenizer.stop_ids))

  def sample(self, params, indices: np.ndarray, key: jax.Array, num_samples: int) -> SampledRows:
    """num_samples completions of each question in `indices` from `params`: device rows [R, ...] prompt-major. Static
    batching decodes chunks of at most rollout.max_rows rows, continuous batching all rows through rollout.max_rows
    cache slots; row r draws from fold_in(key, r) either way."""
    if self.batching(len(indices), num_samples) == "continuous":
      return self._sample_chunk(params, indices, key, num_samples, 0, continuous_batching=True)
    per_chunk = max(1, self.cfg.max_rows // num_samples) if self.cfg.max_rows else len(indices)
    if per_chunk >= len(indices):
      return self._sample_chunk(params, indices, key, num_samples, 0)
    parts = [self._sample_chunk(params, indices[i:i + per_chunk], key, num_samples, i * num_samples)
             for i in range(0, len(indices), per_chunk)]
    rows = {k: jnp.concatenate([p.rows[k] for p in parts]) for k in parts[0].rows}
    return SampledRows(rows, jnp.concatenate([p.lengths for p in parts]),
                       jnp.concatenate([p.truncated for p in parts]))

  def texts(self, sampled: SampledRows) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The host side of a rollout: (decoded texts, completion tokens, lengths) (the only device -> host copy)."""
    tokens, lengths = msharding.host_array(sampled.rows["completion"]), msharding.host_array(sampled.lengths)
    decode = self.tokenizer.decode
    return [decode(tokens[r, :lengths[r]].tolist()) for r in range(len(lengths))], tokens, lengths

  def _sample_chunk(self, params, indices: np.ndarray, key: jax.Array, num_samples: int, row_offset: int,
                    continuous_batching: bool = False) -> SampledRows:
    b, dp = len(indices), self.layout.dp
    tokens, mask, right, lengths = self.prompts(indices)
    if (b * num_samples) % dp:
      raise ValueError(f"{b} questions x {num_samples} samples = {b * num_samples} rows do not split over the "
                       f"{dp} data-parallel devices (rollout.prompts_per_step, rollout.group_size)")
    if self.tools is not None:
      return self._sample_with_tools(params, tokens, mask, right, lengths, key, num_samples, row_offset)
    common = dict(max_new_tokens=self.completion_len, strategy=Temperature(self.temperature), rng=key,
                  eos_id=self.tokenizer.stop_ids, pad_id=self.tokenizer.pad_id, layout=self.layout,
                  row_offset=row_offset)
    if continuous_batching:  # one prefill per prompt at any data-parallel size: no repeated prompts
      out = continuous.sample_arrays(self.model_cfg, params, right, lengths, num_samples=num_samples,
                                     slots=rollout_slots(self.cfg.max_rows, b * num_samples), **common)
    else:
      repeat_first = b % dp != 0
      if repeat_first:  # the sampler splits prompts over the data axes: sample every row as its own prompt
        right, lengths = jnp.repeat(right, num_samples, axis=0), jnp.repeat(lengths, num_samples)
      out = engine.sample_arrays(self.model_cfg, params, right, lengths,
                                 num_samples=1 if repeat_first else num_samples,
                                 decode_segments=self.cfg.decode_segments or None, **common)
    return SampledRows(*self._rows(tokens, mask, out["tokens"], out["lengths"], out["logprobs"], out["reasons"],
                                   num_samples))

  def _sample_with_tools(self, params, tokens, mask, right, lengths, key, num_samples: int,
                         row_offset: int) -> SampledRows:
    """Tool-integrated sampling (programs run on the host between decode rounds): rows padded to completion_width,
    `mask` = the model's tokens, `context_mask` = every completion token."""
    out = generate_with_tools(self.model_cfg, params, msharding.host_array(right), tokenizer=self.tokenizer,
                              max_new_tokens=self.completion_len, strategy=Temperature(self.temperature),
                              num_samples=num_samples, eos_id=self.tokenizer.stop_ids, tools=self.tools, rng=key,
                              prompt_lengths=msharding.host_array(lengths), pad_id=self.tokenizer.pad_id,
                              mesh=self.layout.mesh, rules=self.layout.rules, row_offset=row_offset,
                              decode_segments=self.cfg.decode_segments or None)
    w = out.tokens.shape[1]
    pad = lambda x, fill: np.pad(x, ((0, 0), (0, self.completion_width - w)), constant_values=fill)  # noqa: E731
    model_mask = pad(out.model_mask, False).astype(np.float32)
    context = (np.arange(self.completion_width)[None] < out.lengths[:, None]).astype(np.float32)
    rows = {"prompt": jnp.repeat(tokens, num_samples, axis=0), "prompt_mask": jnp.repeat(mask, num_samples, axis=0)}
    rows = {k: self.layout.batch(v) for k, v in rows.items()}  # device rows resharded, host rows copied over
    rows.update(completion=self.layout.batch(pad(out.tokens, self.tokenizer.pad_id)),
                mask=self.layout.batch(model_mask), context_mask=self.layout.batch(context),
                old_logp=self.layout.batch(pad(out.logprobs, 0.0) * model_mask))
    truncated = np.array([f == "length" for f in out.finish_reasons])
    return SampledRows(rows, self.layout.batch(out.lengths), self.layout.batch(truncated))

  @functools.partial(jax.jit, static_argnums=(0, 7))
  def _rows(self, tokens, mask, completion, lengths, logprobs, reasons, num_samples):
    cmask = (jnp.arange(completion.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)
    rows = {"prompt": jnp.repeat(tokens, num_samples, axis=0), "prompt_mask": jnp.repeat(mask, num_samples, axis=0),
            "completion": completion, "mask": cmask, "old_logp": logprobs * cmask}
    rows = {k: jax.lax.with_sharding_constraint(v, self._batch_sh) for k, v in rows.items()}
    return rows, lengths, reasons == engine.LENGTH
