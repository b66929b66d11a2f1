"""Continuous batching: a fixed number of cache slots, each refilled with the next waiting completion as soon as its
row finishes, so the decode batch stays full until the queue drains (what vLLM, SGLang and transformers' continuous
batching do for the peers' RL rollouts; `dsmath.sample.engine`'s static batch decodes every row until the longest
one ends).

One jitted program with static shapes. The prompts are prefilled once each (`engine.prefill`, N = 1) into a prompt
bank; the first token of every completion is sampled from its prompt's logits, then one `lax.while_loop` runs the
slots: each step decodes one token for every slot, records it in its completion's row, and gives every finished (or
empty) slot the next completion of the queue by copying its prompt's KV rows from the bank into the slot (the slot
table lives in the loop state, so refills need no host round trip). A completion draws exactly what the static engine
draws for the same row: its key is fold_in(rng, row_offset + row), its step j draws with fold_in(key, j)
(`engine.sample_step`), whatever slot or refill order it lands in.

Cache of a slot: [0, P) the prompt (copied from the bank); [P, P + M) a ring of M = max_new slots that decode step t
writes at P + t mod M. A completion writes its tokens at consecutive steps, at most max_new - 1 of them, so they never
overwrite each other; the ring's entries of the slot's previous completion are dropped (segment 0) at the refill.
Attention masks by segment and position, never by slot, so the ring order changes results only by float rounding.

Data parallelism: completions are split into D = the data-parallel size contiguous groups (prompt-major rows), each
with its own slots, queue and bank of just the prompts its rows need (a prompt whose samples span groups is copied to
each; still one prefill per prompt, whatever D is). The group bookkeeping (recording tokens, refilling slots) runs in
`jax.shard_map` over the mesh, so every gather and scatter stays on its device; the model runs under the usual
logical sharding. Groups drain their own queues (no cross-device refills).
"""
import dataclasses
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from dsmath import model
from dsmath.sample import engine

_OUT = ("tokens", "logprobs", "model_logprobs", "lengths", "reasons")


@dataclasses.dataclass(frozen=True)
class Groups:
  """The split of R = B * N completions (prompt-major) over D data-parallel groups; rows padded to D * rows.

  completion_prompt [D * rows]: each completion's prompt (padding rows: the last prompt); valid [D * rows]: real rows;
  bank_prompt [D * bank]: the prompt held in each group's bank row; bank_row [D * rows]: a completion's row in its
  group's bank; slots: cache slots per group. own_prompts: each group's bank is exactly the prompts the prefill
  placed on its devices (B a multiple of D, each group's rows whole questions), so no prompt moves between devices.
  """
  groups: int
  rows: int
  slots: int
  bank: int
  completion_prompt: np.ndarray
  valid: np.ndarray
  bank_prompt: np.ndarray
  bank_row: np.ndarray
  own_prompts: bool


def split_groups(num_prompts: int, num_samples: int, groups: int, slots: int) -> Groups:
  """Contiguous blocks of completions per group; `slots` (total) rounded up to a multiple of the groups, at most a
  group's rows."""
  r = num_prompts * num_samples
  per = -(-r // groups)
  rows = np.arange(groups * per)
  prompt = (np.minimum(rows, r - 1) // num_samples).reshape(groups, per)
  lo = prompt[:, 0]
  bank = int((prompt[:, -1] - lo).max()) + 1
  bank_prompt = np.minimum(lo[:, None] + np.arange(bank), num_prompts - 1).reshape(-1).astype(np.int32)
  return Groups(groups=groups, rows=per, slots=max(1, min(per, -(-slots // groups))), bank=bank,
                completion_prompt=prompt.reshape(-1).astype(np.int32), valid=rows < r, bank_prompt=bank_prompt,
                bank_row=(prompt - lo[:, None]).reshape(-1).astype(np.int32),
                own_prompts=bool(bank_prompt.size == -(-num_prompts // groups) * groups and
                                 (bank_prompt == np.arange(bank_prompt.size)).all()))


def _prompt_bank(prompt_cache: dict, bank_prompt: jax.Array, prompts: int) -> dict:
  """Each group's bank rows [D * bank] from the prefilled prompts: the real ones (the first `prompts` rows) are
  replicated over the data axes once, then every device gathers its own rows (a gather from the data-sharded cache
  would replicate all of it, padding prompts included)."""
  kv_batch = _kv_axes(prompt_cache)[0]
  real = {n: jax.tree.map(lambda a: jax.lax.slice_in_dim(a, 0, prompts, axis=kv_batch), prompt_cache[n])
          for n in ("k", "v")} | {n: prompt_cache[n][:prompts] for n in ("segment_ids", "positions")}
  real = engine.constrain_cache(real, batch=None)
  bank = {n: jax.tree.map(lambda a: jnp.take(a, bank_prompt, axis=kv_batch), real[n]) for n in ("k", "v")}
  return engine.constrain_cache(bank | {n: jnp.take(real[n], bank_prompt, axis=0) for n in ("segment_ids",
                                                                                            "positions")})


def _kv_axes(cache: dict) -> tuple[int, int]:
  """(batch axis, slot axis) of the cache's k/v arrays (per layer [B, KV, S, D], or stacked [L, B, KV, S, D])."""
  return (0, 2) if isinstance(cache["k"], tuple) else (1, 3)


def _copy_prompts(cache: dict, bank: dict, take: jax.Array, src: jax.Array) -> dict:
  """Slots `take` [S] get bank row src [S] in their first P cache slots (the prompt) and an empty ring: one row at a
  time, in place (a refill moves only the prompts it needs)."""
  kv_batch, _ = _kv_axes(cache)
  ring = cache["segment_ids"].shape[1] - bank["segment_ids"].shape[1]
  order = jnp.argsort(~take, stable=True)  # the refilled slots first

  def put(a, b, slot, row, batch_axis, tail=0):
    part = jax.lax.dynamic_slice_in_dim(b, row, 1, axis=batch_axis)
    if tail:  # the ring's segment ids: 0
      part = jnp.pad(part, [(0, 0)] * (part.ndim - 1) + [(0, tail)])
    start = [0] * a.ndim
    start[batch_axis] = slot
    return jax.lax.dynamic_update_slice(a, part, start)

  def one(i, c):
    slot, row = order[i], src[order[i]]
    out = {n: jax.tree.map(lambda a, b: put(a, b, slot, row, kv_batch), c[n], bank[n]) for n in ("k", "v")}
    out["positions"] = put(c["positions"], bank["positions"], slot, row, 0)
    out["segment_ids"] = put(c["segment_ids"], bank["segment_ids"], slot, row, 0, ring)
    return out

  return jax.lax.fori_loop(0, jnp.sum(take), one, cache)


_SLOT = ("comp", "step", "last", "pos", "key", "budget", "window")  # the slot table: one entry per cache slot


def _refill(st: dict, free: jax.Array, cache: dict, bank: dict) -> tuple[dict, dict]:
  """One group: free slots [S] take the next queued completions, in slot order, while the queue lasts."""
  rank = jnp.cumsum(free) - 1
  src = st["ptr"] + rank
  take = free & (src < st["qlen"])
  new = st["queue"][jnp.clip(src, 0, st["queue"].shape[0] - 1)]
  pick = lambda table, old: jnp.where(take.reshape((-1,) + (1,) * (old.ndim - 1)), table[new], old)  # noqa: E731
  st = dict(st, comp=jnp.where(take, new, jnp.where(free, -1, st["comp"])), ptr=st["ptr"] + jnp.sum(take),
            step=jnp.where(take, 1, st["step"]), last=pick(st["c_first"], st["last"]),
            pos=pick(st["c_pos0"], st["pos"]), key=pick(st["c_key"], st["key"]),
            budget=pick(st["c_budget"], st["budget"]), window=pick(st["c_window"], st["window"]))
  return st, _copy_prompts(cache, bank, take, st["c_bank"][new])


def _start_group(st: dict, cache: dict, bank: dict) -> tuple[dict, dict]:
  """One group: queue = its completions not finished by their first token, in row order; every slot filled."""
  waiting = ~st["done0"]
  st = dict(st, queue=jnp.argsort(~waiting, stable=True).astype(jnp.int32),
            qlen=jnp.sum(waiting, keepdims=True, dtype=jnp.int32), ptr=jnp.zeros_like(st["ptr"]))
  return _refill(st, jnp.ones_like(st["comp"], bool), cache, bank)


def _advance_group(st: dict, cache: dict, bank: dict, sampled: dict) -> tuple[dict, dict]:
  """One group after a decode step: record each slot's token in its completion's row, advance the running slots,
  refill the finished and empty ones."""
  active = st["comp"] >= 0
  idx = jnp.where(active, st["comp"], st["tokens"].shape[0])  # inactive slots write out of bounds: dropped
  put = lambda buf, x: buf.at[idx, st["step"]].set(x, mode="drop")  # noqa: E731
  st = dict(st, tokens=put(st["tokens"], sampled["token"]), logprobs=put(st["logprobs"], sampled["logprob"]),
            model_logprobs=put(st["model_logprobs"], sampled["model_logprob"]),
            lengths=st["lengths"].at[idx].set(st["step"] + 1, mode="drop"),
            reasons=st["reasons"].at[idx].set(sampled["reason"], mode="drop"),
            step=st["step"] + 1, last=sampled["token"], pos=st["pos"] + 1, window=sampled["window"])
  return _refill(st, ~active | sampled["finished"], cache, bank)


def _compact_group(size: int):
  """One group, once its queue is empty: the running slots move to the first `size` slots (cache rows included) and
  the table shrinks to them, so the tail of the rollout decodes a smaller batch."""
  def fn(st: dict, cache: dict, bank: dict) -> tuple[dict, dict]:
    del bank
    keep = jnp.argsort(st["comp"] < 0, stable=True)[:size]
    kv_batch, _ = _kv_axes(cache)
    cache = {n: jax.tree.map(lambda a: jnp.take(a, keep, axis=kv_batch), cache[n]) for n in ("k", "v")} | {
        n: cache[n][keep] for n in ("segment_ids", "positions")}
    return dict(st, **{k: st[k][keep] for k in _SLOT}), cache
  return fn


def phase_sizes(slots: int, max_new: int, phases: Optional[int] = None) -> tuple[int, ...]:
  """Slots per group in each phase of the decode: all of them while the queue lasts, then halved as rows finish, down
  to an eighth: at most `phases` phases. Each compiles its own copy of the loop (seconds each), so by default (None)
  short decodes, whose tails are short, keep fewer: one per 64 new tokens, at most 4 (as `engine.decode_windows`)."""
  count = min(4, max_new // 64) if phases is None else phases
  sizes = [slots]
  while len(sizes) < count and sizes[-1] // 2 >= max(1, slots // 8):
    sizes.append(sizes[-1] // 2)
  return tuple(sizes)


def _per_group(fn, layout, st: dict, cache: dict, bank: dict, *extra):
  """fn(st, cache, bank, *extra) -> (st, cache) on each data-parallel group's own rows: every array of st and extra
  is split over the data axes along its first dim, cache and bank as the engine shards a cache (batch over the data
  axes, KV heads over the tensor axis). One device: fn itself."""
  if layout is None:
    return fn(st, cache, bank, *extra)
  mesh, rules = layout
  batch, heads = nn.logical_to_mesh_axes(("batch", "act_heads"), rules)
  rows = lambda tree: jax.tree.map(lambda a: PartitionSpec(batch), tree)  # noqa: E731

  def kv(c):
    spec = PartitionSpec(batch, heads) if isinstance(c["k"], tuple) else PartitionSpec(None, batch, heads)
    return {"k": jax.tree.map(lambda a: spec, c["k"]), "v": jax.tree.map(lambda a: spec, c["v"]),
            "segment_ids": PartitionSpec(batch), "positions": PartitionSpec(batch)}

  return jax.shard_map(fn, mesh=mesh, in_specs=(rows(st), kv(cache), kv(bank)) + tuple(rows(e) for e in extra),
                       out_specs=(rows(st), kv(cache)), check_vma=False)(st, cache, bank, *extra)


@functools.partial(jax.jit, static_argnames=("cfg", "strategy", "max_new", "slots", "prompts", "phases", "layout"))
def rollout(cfg: model.ModelConfig, strategy, max_new: int, params: dict, prompt_cache: dict, logits: jax.Array,
            prompt_lengths: jax.Array, completion_prompt: jax.Array, valid: jax.Array, bank_prompt: jax.Array,
            bank_row: jax.Array, keys: jax.Array, budget: jax.Array, stop_seqs: jax.Array, eos_ids: jax.Array,
            pad_id: jax.Array, *, slots: int, prompts: int, phases: Optional[int] = None, layout=None) -> dict:
  """The continuous decode after the prefill. prompt_cache, logits [B', V], prompt_lengths [B']: `engine.prefill` of
  the prompts with N = 1 and cache_len P (B' = prompts, the real ones first, padded to a multiple of the groups);
  completion_prompt, valid, bank_prompt, bank_row from `split_groups` (device arrays, split over the data axes;
  bank_prompt None when its `own_prompts`); keys [R']: each completion's key; budget [R']: tokens each may generate
  (<= max_new); slots: the total cache slots (a multiple of the groups); phases: see `phase_sizes`. layout:
  `engine.Layout.key`.

  Returns dict(tokens, logprobs, model_logprobs [R', max_new], lengths, reasons [R'] as `engine.decode`; steps: the
  decode steps the loop ran; row_steps: the rows those steps ran through the model, the slots of each step's phase).
  """
  take = lambda x, i: nn.with_logical_constraint(jnp.take(x, i, axis=0), ("batch",) + (None,) * (x.ndim - 1))  # noqa
  rows = completion_prompt.shape[0]
  groups = 1 if layout is None else engine.data_parallel_size(*layout)
  first = engine.sample_step(strategy, take(logits, completion_prompt), keys, jnp.zeros((rows,), jnp.int32),
                             engine.empty_window(rows, stop_seqs), valid, budget, stop_seqs, eos_ids, pad_id)
  bank = prompt_cache if bank_prompt is None else _prompt_bank(prompt_cache, bank_prompt, prompts)
  p = prompt_cache["segment_ids"].shape[1]
  cache = engine.constrain_cache(model.init_cache(cfg, slots, p + max_new, unrolled=model.is_decode_params(params)))

  column = lambda x, dtype, fill: jnp.full((rows, max_new), fill, dtype).at[:, 0].set(x)  # noqa: E731
  per_slot = lambda dtype: jnp.zeros((slots,), dtype)  # noqa: E731
  st = dict(tokens=column(first["token"], jnp.int32, pad_id), logprobs=column(first["logprob"], jnp.float32, 0.0),
            model_logprobs=column(first["model_logprob"], jnp.float32, 0.0), lengths=valid.astype(jnp.int32),
            reasons=first["reason"], done0=first["finished"] | ~valid, c_first=first["token"],
            c_window=first["window"], c_pos0=take(prompt_lengths, completion_prompt), c_key=keys, c_budget=budget,
            c_bank=bank_row, comp=jnp.full((slots,), -1, jnp.int32), step=per_slot(jnp.int32),
            last=per_slot(jnp.int32), pos=per_slot(jnp.int32), key=keys[:slots], budget=per_slot(jnp.int32),
            window=engine.empty_window(slots, stop_seqs), queue=jnp.zeros((rows,), jnp.int32),
            qlen=jnp.zeros((groups,), jnp.int32), ptr=jnp.zeros((groups,), jnp.int32))
  st, cache = _per_group(_start_group, layout, st, cache, bank)

  def body(carry):
    t, row_steps, st, cache = carry
    active = st["comp"] >= 0
    hidden, cache = model.forward_with_cache(cfg, params, st["last"][:, None], st["pos"][:, None],
                                             active.astype(jnp.int32)[:, None], cache, p + t % max_new)
    sampled = engine.sample_step(strategy, model.lm_head(cfg, params, hidden[:, 0]), st["key"], st["step"],
                                 st["window"], active, st["budget"], stop_seqs, eos_ids, pad_id)
    st, cache = _per_group(_advance_group, layout, st, engine.constrain_cache(cache), bank, sampled)
    return t + 1, row_steps + active.shape[0], st, cache

  def running(carry, next_size):
    """Decode on while any slot runs, until the next phase's slots can hold every group's running ones."""
    st = carry[2]
    active = st["comp"] >= 0
    if not next_size:
      return jnp.any(active)
    fits = jnp.all(jnp.sum(active.reshape(groups, -1), axis=1) <= next_size) & jnp.all(st["ptr"] >= st["qlen"])
    return jnp.any(active) & ~fits

  sizes = phase_sizes(slots // groups, max_new, phases)
  carry = (jnp.int32(0), jnp.int32(0), st, cache)
  for j, size in enumerate(sizes):
    if j:
      st, cache = _per_group(_compact_group(size), layout, carry[2], carry[3], bank)
      carry = (*carry[:2], st, engine.constrain_cache(cache))
    carry = jax.lax.while_loop(functools.partial(running, next_size=sizes[j + 1] if j + 1 < len(sizes) else 0),
                               body, carry)
  steps, row_steps, st, _ = carry
  return dict({k: st[k] for k in _OUT}, steps=steps, row_steps=row_steps)


def sample_arrays(cfg: model.ModelConfig, params: dict, tokens, lengths, *, max_new_tokens: int, strategy,
                  num_samples: int, rng: jax.Array, slots: Optional[int] = None, eos_id=None, pad_id: int = 0,
                  stop_seqs=None, layout: Optional[engine.Layout] = None, row_offset: int = 0, budgets=None,
                  unroll_layers: Optional[bool] = None, compute_dtype: Optional[str] = None,
                  phases: Optional[int] = None) -> dict:
  """`engine.sample_arrays` with continuous batching: right-padded prompts tokens [B, P], lengths [B] (host or device;
  any B) -> device arrays tokens, logprobs, model_logprobs [R', max_new], lengths, reasons [R'], prompt-major rows
  (row r: sample r % N of prompt r // N; R' = B * N rounded up to a multiple of the data-parallel size, rows past
  B * N are empty), steps and row_steps (`rollout`).

  slots: cache rows decoding at once (default `engine.default_slots`); the KV cache is slots x (P + max_new_tokens). Row r
  draws with fold_in(rng, row_offset + r), exactly as the static engine does. budgets [B * N]: tokens each row may
  generate (default max_new_tokens). compute_dtype: see `engine.rollout_params`. phases: the decode's phases, the
  tail's ever smaller caches (`phase_sizes`; None: by max_new_tokens); they change the speed, not the samples.
  """
  layout = layout or engine.Layout()
  b, p = tokens.shape
  rows = b * num_samples
  groups = split_groups(b, num_samples, layout.dp, engine.default_slots(rows) if slots is None else slots)
  padded = -(-b // layout.dp) * layout.dp  # the prefill splits prompts over the data axes: dummy one-token prompts
  if padded > b:
    tokens = jnp.concatenate([jnp.asarray(tokens), jnp.full((padded - b, p), pad_id, jnp.int32)])
    lengths = jnp.concatenate([jnp.asarray(lengths, jnp.int32), jnp.ones((padded - b,), jnp.int32)])
  budget = np.ones((groups.groups * groups.rows,), np.int32)  # padding rows: no tokens
  budget[:rows] = max_new_tokens if budgets is None else engine.check_budgets(budgets, rows, max_new_tokens)
  stops = engine.stop_sequence_array([]) if stop_seqs is None else stop_seqs
  cfg, params = engine.rollout_params(cfg, params, unroll_layers, compute_dtype)
  with layout.scope():
    lengths = layout.batch(lengths)
    prompt_cache, logits = engine.prefill(cfg, params, layout.batch(tokens), lengths, cache_len=p, num_samples=1,
                                          layout=layout.key)
    keys = engine._row_keys(rng, layout.replicated(np.int32(row_offset)), groups.groups * groups.rows)
    out = rollout(cfg, strategy, max_new_tokens, params, prompt_cache, logits, lengths,
                  layout.batch(groups.completion_prompt), layout.batch(groups.valid),
                  None if groups.own_prompts else layout.batch(groups.bank_prompt), layout.batch(groups.bank_row),
                  layout.batch(keys), layout.batch(budget), layout.replicated(stops),
                  layout.replicated(engine.eos_array(eos_id)), layout.replicated(np.int32(pad_id)),
                  slots=groups.groups * groups.slots, prompts=b, phases=phases, layout=layout.key)
  return out
