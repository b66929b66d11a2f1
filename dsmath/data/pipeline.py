"""Grain input pipelines for pre-training and SFT: mix named sources, tokenize, pack to fixed length, batch.

Batch format (a plain dict of numpy arrays, B = data.batch_size // process_count rows, T = data.seq_len):
  inputs       int32 [B, T]   token ids fed to the model
  targets      int32 [B, T]   the next token of each input (already shifted: the trainer does no slicing)
  segment_ids  int32 [B, T]   0 = padding, 1.. = packed document index within the row
  positions    int32 [B, T]   position within the document, restarting at 0 for each one
  loss_mask    float32 [B, T] 1 where targets[b, t] counts in the loss (pre-training: every real token; SFT: response
                              tokens only, tool outputs excluded); 0 on padding
Each document (or SFT example) is shifted on its own before packing, so no target ever crosses a document boundary.
A document longer than T + 1 tokens is cut into chunks of T + 1 tokens overlapping by one, so every token is a target
exactly once; an SFT example longer than T + 1 tokens is truncated to its first T + 1 tokens.

Order of operations (all deterministic for data.seed, per process):
  each source: records -> text (or SFT segments) -> this process's shard [i::n] -> shuffled, new order each epoch ->
  repeated forever; MapDataset.mix by weight (exact proportions, so a small source repeats rather than ending the
  mixture) -> tokenize -> shift and chunk -> grain FirstFitPackIterDataset -> batch -> optional worker processes.
The iterator is a grain DatasetIterator: `get_state()` / `set_state()` round-trip exactly (save it in checkpoints).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping, Sequence

import grain
import numpy as np
from absl import flags

from dsmath.data import sft as sft_lib
from dsmath.data.config import resolve_data_config
from dsmath.data.sources import RecordError, RecordSource, dataset_of_texts, open_source
from dsmath.data.chat import ChatTemplate
from dsmath.data.tokenizer import Tokenizer, bos_prefix, chat_template_of

log = logging.getLogger(__name__)

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")


def shard_of(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(index, count) of this process: given explicitly, else grain's ShardByJaxProcess (jax.process_index())."""
  if process_index is None or process_count is None:
    opts = grain.sharding.ShardByJaxProcess()
    return opts.shard_index, opts.shard_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return process_index, process_count


def _component_seed(seed: int, i: int) -> int:
  return (seed * 1_000_003 + 7919 * i) % 2**32


def mix_components(components: Mapping[str, tuple[grain.MapDataset, float]], *, seed: int, shuffle: bool,
                   process_index: int, process_count: int) -> grain.MapDataset:
  """Infinite MapDataset of {"source": name, "item": element} drawn from the named components by weight."""
  if not components:
    raise ValueError("config.data.sources is empty: configure at least one source")
  names = sorted(components)
  parts, weights = [], []
  for i, name in enumerate(names):
    ds, weight = components[name]
    if len(ds) < process_count:
      raise ValueError(f"source {name!r} has {len(ds)} record(s), fewer than the {process_count} processes")
    ds = ds[process_index::process_count]
    if shuffle:
      component_seed = _component_seed(seed, i)
      ds = _EpochShuffle(ds, component_seed) if len(ds) <= _MAX_PERMUTATION else ds.shuffle(seed=component_seed)
    parts.append(ds.repeat().map(_Tag(name)))
    weights.append(weight)
  return grain.MapDataset.mix(parts, weights)


class _EpochShuffle(grain.MapDataset):
  """A new permutation of the parent each epoch (index // len), like grain's shuffle, but from a cached numpy
  permutation: grain's index_shuffle costs ~30 us per element at 1e5 records and ~19 ms at 3 records (measured),
  too slow for the small sources toy mixtures hold. Used up to _MAX_PERMUTATION records (8 bytes per record)."""

  def __init__(self, parent: grain.MapDataset, seed: int):
    super().__init__(parent)
    self._seed = seed
    self._cache = (None, None)

  def __len__(self) -> int:
    return len(self._parent)

  def _permutation(self, epoch: int) -> np.ndarray:
    if self._cache[0] != epoch:
      self._cache = (epoch, np.random.default_rng([self._seed, epoch]).permutation(len(self._parent)))
    return self._cache[1]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, i = divmod(int(index), len(self._parent))
    return self._parent[int(self._permutation(epoch)[i])]

  def __str__(self) -> str:
    return f"_EpochShuffle(seed={self._seed})"


_MAX_PERMUTATION = 1 << 26


class _Tag:
  def __init__(self, name: str):
    self.name = name

  def __call__(self, item):
    return {"source": self.name, "item": item}


class _TokenizeDocument:
  """{"item": text} -> int32 [n] tokens, [BOS] text [EOS]."""

  def __init__(self, tokenizer: Tokenizer, add_bos: bool, add_eos: bool):
    self.tokenizer, self.add_bos, self.add_eos = tokenizer, add_bos, add_eos

  def __call__(self, element) -> np.ndarray:
    ids = self.tokenizer.encode(element["item"])
    pre = bos_prefix(self.tokenizer) if self.add_bos else []
    post = [self.tokenizer.eos_id] if self.add_eos else []
    return np.asarray(pre + ids + post, np.int32)


class _ShiftAndChunk(grain.experimental.FlatMapTransform):
  """tokens [n] -> examples {inputs, targets, loss_mask} of at most T pairs; chunks overlap by one token."""
  max_fan_out = 1 << 20

  def __init__(self, seq_len: int):
    self.seq_len = seq_len

  def flat_map(self, tokens: np.ndarray) -> Sequence[dict]:
    out = []
    for start in range(0, max(len(tokens) - 1, 0), self.seq_len):
      piece = tokens[start:start + self.seq_len + 1]
      out.append({"inputs": piece[:-1], "targets": piece[1:], "loss_mask": np.ones(len(piece) - 1, np.float32)})
    return out


class _TokenizeSft:
  """{"item": segments} -> one example {inputs, targets, loss_mask}: [BOS] prompt response [EOS], truncated (a chat
  template writes its own BOS and end of turn: `wrap` False)."""

  def __init__(self, tokenizer: Tokenizer, seq_len: int, wrap: bool = True):
    self.tokenizer, self.seq_len, self.wrap = tokenizer, seq_len, wrap

  def __call__(self, element) -> dict:
    ids = bos_prefix(self.tokenizer) if self.wrap else []
    mask = [False] * len(ids)
    for text, trainable in element["item"]:
      piece = self.tokenizer.encode(text)
      ids += piece
      mask += [trainable] * len(piece)
    if self.wrap:
      ids.append(self.tokenizer.eos_id)
      mask.append(True)
    ids = np.asarray(ids[:self.seq_len + 1], np.int32)
    mask = np.asarray(mask[:self.seq_len + 1], np.float32)
    return {"inputs": ids[:-1], "targets": ids[1:], "loss_mask": mask[1:]}


def _to_batch(packed: dict) -> dict:
  return {"inputs": packed["inputs"], "targets": packed["targets"], "segment_ids": packed["inputs_segment_ids"],
          "positions": packed["inputs_positions"], "loss_mask": packed["loss_mask"].astype(np.float32)}


def pack_and_batch(examples: grain.IterDataset, *, seq_len: int, batch_size: int, num_bins: int, seed: int,
                   shuffle_bins: bool) -> grain.IterDataset:
  """Examples {inputs, targets, loss_mask} (each <= seq_len) -> batches in the format of this module's docstring."""
  length = {"inputs": seq_len, "targets": seq_len, "loss_mask": seq_len}
  packed = grain.experimental.FirstFitPackIterDataset(
      examples, length_struct=length, num_packing_bins=num_bins, seed=seed, shuffle_bins=shuffle_bins,
      meta_features=("targets", "loss_mask"))
  return packed.map(_to_batch).batch(batch_size, drop_remainder=True)


def _finish(examples: grain.IterDataset, cfg, process_index: int, process_count: int) -> grain.IterDataset:
  if cfg.batch_size % process_count:
    raise ValueError(f"config.data.batch_size={cfg.batch_size} is not divisible by the {process_count} processes")
  per_process = cfg.batch_size // process_count
  bins = cfg.packing_bins or 4 * per_process
  ds = pack_and_batch(examples, seq_len=cfg.seq_len, batch_size=per_process, num_bins=bins,
                      seed=_component_seed(cfg.seed, 10_007 + process_index), shuffle_bins=cfg.shuffle)
  if cfg.num_workers:
    # Grain's worker processes read absl flags; programs not started by absl.app have not parsed them.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers,
                                                     per_worker_buffer_size=cfg.worker_buffer_size))
  return ds


# ---- pre-training ----

def pretrain_documents(data_config, *, process_index: int | None = None,
                       process_count: int | None = None) -> grain.MapDataset:
  """The mixed document stream before tokenization: infinite MapDataset of {"source": name, "item": text}."""
  cfg = resolve_data_config(data_config)
  process_index, process_count = shard_of(process_index, process_count)
  components = {}
  for name, src in cfg.sources.items():
    source = open_source(src, cfg.on_error)
    components[name] = (dataset_of_texts(source, src.text_field, src.formatter or None), src.weight)
  return mix_components(components, seed=cfg.seed, shuffle=cfg.shuffle, process_index=process_index,
                        process_count=process_count)


def pretrain_dataset(data_config, tokenizer: Tokenizer, *, process_index: int | None = None,
                     process_count: int | None = None) -> grain.IterDataset:
  """Infinite IterDataset of packed pre-training batches (format in the module docstring)."""
  cfg = resolve_data_config(data_config)
  process_index, process_count = shard_of(process_index, process_count)
  docs = pretrain_documents(cfg, process_index=process_index, process_count=process_count)
  tokens = docs.map(_TokenizeDocument(tokenizer, cfg.add_bos, cfg.add_eos)).to_iter_dataset()
  examples = grain.experimental.FlatMapIterDataset(tokens, _ShiftAndChunk(cfg.seq_len))
  return _finish(examples, cfg, process_index, process_count)


def make_pretrain_iterator(data_config, tokenizer: Tokenizer, *, process_index: int | None = None,
                           process_count: int | None = None) -> grain.DatasetIterator:
  """An iterator of pre-training batches with get_state()/set_state() for checkpoints."""
  return iter(pretrain_dataset(data_config, tokenizer, process_index=process_index, process_count=process_count))


# ---- SFT ----

def sft_template(cfg, chat_template: ChatTemplate | None = None):
  """config.data.sft_template's template: a name in dsmath.data.sft.TEMPLATES, or "chat" (the tokenizer's own chat
  template, `chat_template`)."""
  if cfg.sft_template == "chat":
    if chat_template is None:
      raise ValueError("config.data.sft_template='chat' needs the tokenizer's chat template (sft_dataset passes it)")
    return sft_lib.ChatSftTemplate(chat_template)
  if cfg.sft_template not in sft_lib.TEMPLATES:
    raise KeyError(f"unknown config.data.sft_template {cfg.sft_template!r}; valid: {sorted(sft_lib.TEMPLATES)} or "
                   f"'chat' (the tokenizer's chat template)")
  return sft_lib.TEMPLATES[cfg.sft_template]


class _SftExample:
  """Record index -> (text, trainable) segments in the chat template."""

  def __init__(self, source: RecordSource, formatter: str, template):
    self.source, self.formatter, self.template = source, formatter, template

  def formatted(self, index: int):
    record = self.source[index]
    try:
      return sft_lib.SFT_FORMATTERS[self.formatter](record)
    except KeyError as e:
      raise RecordError(f"{self.source.where(index)}: record has no field {e.args[0]!r} (needed by SFT formatter "
                        f"{self.formatter!r}); its fields are {sorted(record)}") from None

  def __call__(self, index: int):
    style, question, response = self.formatted(index)
    return sft_lib.example_segments(self.template, style, question, response)


def sft_examples(data_config, *, process_index: int | None = None, process_count: int | None = None,
                 chat_template: ChatTemplate | None = None) -> grain.MapDataset:
  """The mixed SFT example stream before tokenization: infinite MapDataset of {"source", "item": segments}.

  Records a formatter cannot express (e.g. gsm8k_pot when the last calculation is not the answer) are found when
  the source is opened, left out, counted and logged.
  """
  cfg = resolve_data_config(data_config)
  process_index, process_count = shard_of(process_index, process_count)
  template = sft_template(cfg, chat_template)
  components = {}
  for name, src in cfg.sources.items():
    if src.formatter not in sft_lib.SFT_FORMATTERS:
      raise KeyError(f"config.data.sources.{name}.formatter={src.formatter!r} is not an SFT formatter; valid: "
                     f"{sorted(sft_lib.SFT_FORMATTERS)}")
    source = open_source(dataclasses.replace(src, text_field=""), cfg.on_error)
    for path in source.files:
      sft_lib.check_not_test_split(path)
    example = _SftExample(source, src.formatter, template)
    keep = np.asarray([i for i in range(len(source)) if example.formatted(i) is not None], np.int64)
    if len(keep) < len(source):
      log.warning("SFT source %r: %d of %d records cannot be expressed by formatter %r; left out", name,
                  len(source) - len(keep), len(source), src.formatter)
    if not len(keep):
      raise ValueError(f"SFT source {name!r}: formatter {src.formatter!r} accepts none of {source.files}")
    components[name] = (grain.MapDataset.source(keep).map(example), src.weight)
  return mix_components(components, seed=cfg.seed, shuffle=cfg.shuffle, process_index=process_index,
                        process_count=process_count)


def sft_dataset(data_config, tokenizer: Tokenizer, *, process_index: int | None = None,
                process_count: int | None = None) -> grain.IterDataset:
  """Infinite IterDataset of packed SFT batches (loss only on response tokens)."""
  cfg = resolve_data_config(data_config)
  process_index, process_count = shard_of(process_index, process_count)
  chat = chat_template_of(tokenizer) if cfg.sft_template == "chat" else None
  examples = sft_examples(cfg, process_index=process_index, process_count=process_count, chat_template=chat)
  wrap = not sft_template(cfg, chat).writes_specials
  examples = examples.map(_TokenizeSft(tokenizer, cfg.seq_len, wrap)).to_iter_dataset()
  return _finish(examples, cfg, process_index, process_count)


def make_sft_iterator(data_config, tokenizer: Tokenizer, *, process_index: int | None = None,
                      process_count: int | None = None) -> grain.DatasetIterator:
  """An iterator of SFT batches with get_state()/set_state() for checkpoints."""
  return iter(sft_dataset(data_config, tokenizer, process_index=process_index, process_count=process_count))


def builtin_sft_sources(names: Sequence[str] = tuple(sft_lib.BUILTIN_SFT_SOURCES)) -> dict:
  """Source configs of the built-in SFT sources (GSM8K and MATH train splits), for config.data.sources."""
  unknown = sorted(set(names) - set(sft_lib.BUILTIN_SFT_SOURCES))
  if unknown:
    raise KeyError(f"unknown built-in SFT source(s) {unknown}; valid: {sorted(sft_lib.BUILTIN_SFT_SOURCES)}")
  return {n: dict(sft_lib.BUILTIN_SFT_SOURCES[n]) for n in names}


# ---- reporting ----

def packing_efficiency(batch: Mapping[str, Any]) -> float:
  """Fraction of the batch's token slots that hold real tokens (not padding)."""
  return float(np.mean(np.asarray(batch["segment_ids"]) > 0))


def batch_stats(batch: Mapping[str, Any]) -> dict:
  """Per-batch figures worth logging: packing efficiency, documents per row, tokens in the loss."""
  seg = np.asarray(batch["segment_ids"])
  return {"packing_efficiency": packing_efficiency(batch), "docs_per_row": float(np.mean(seg.max(axis=1))),
          "loss_tokens": float(np.sum(batch["loss_mask"]))}
