"""Import from and export to HF checkpoints (config.json + safetensors, optionally sharded) of the families the
decoder's switches cover: `LlamaForCausalLM` (LLaMA-2, DeepSeek, Llama 3 with its RoPE scaling), `Qwen2ForCausalLM`
(Qwen2, Qwen2.5, Qwen2.5-Math: q/k/v biases) and `Qwen3ForCausalLM` (per-head q/k RMSNorm, its own head_dim); tied
embeddings in any of them.

Import streams: every stacked [L, ...] parameter is filled layer by layer straight from the safetensors files (read
lazily, one tensor at a time) and handed to JAX before the next parameter is built, so a 7B import holds one copy
of the model plus at most one parameter in flight. Export writes one shard at a time, bounded by `max_shard_size`.

Layouts. HF linear weights are [out, in]; ours are [in, ...out] with heads split out:
  q_proj [N*D, H] -> q [H, N, D]     k_proj/v_proj [KV*D, H] -> k/v [H, KV, D]     o_proj [H, N*D] -> o [N, D, H]
  q_proj.bias [N*D] -> q_bias [N, D] k_proj/v_proj.bias [KV*D] -> k_bias/v_bias [KV, D]
  q_norm/k_norm [D] -> attn/q_norm, attn/k_norm scale [D]
  gate_proj/up_proj [I, H] -> [H, I]  down_proj [H, I] -> [I, H]                    lm_head [V, H] -> [H, V]
RoPE: HF checkpoints of these families use the rotate-half layout (the Meta -> HF conversion permutes q/k rows into
it), which is what `dsmath.model.rope.rope` computes, so q/k need no permutation.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Optional

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from dsmath.files import write_atomic, write_json_atomic
from dsmath.model.api import abstract_params
from dsmath.model.config import FAMILIES, ModelConfig

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Buffers some older HF checkpoints saved alongside the weights; recomputed from rope_theta, so safe to skip.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_HEAD_KEY = "lm_head.weight"


@dataclasses.dataclass(frozen=True)
class HFFamily:
  """What an HF architecture family is on disk: its names and the config.json keys it adds to LLaMA's."""
  architecture: str
  model_type: str
  default_head_dim: int  # config.json without head_dim: 0 = hidden_size // num_attention_heads (the class default)
  has_attention_bias_key: bool  # Llama and Qwen3 have `attention_bias` (q, k, v and o); Qwen2 biases q, k, v always
  has_sliding_window: bool  # Qwen's use_sliding_window / sliding_window / max_window_layers / layer_types


# Keyed like dsmath.model.config.FAMILIES (which switches each family is).
HF_FAMILIES = {
    "llama": HFFamily("LlamaForCausalLM", "llama", 0, True, False),
    "qwen2": HFFamily("Qwen2ForCausalLM", "qwen2", 0, False, True),
    "qwen3": HFFamily("Qwen3ForCausalLM", "qwen3", 128, True, True),
}


@dataclasses.dataclass(frozen=True)
class _Leaf:
  """How one of our parameters maps to HF tensors (one per layer if `per_layer`)."""
  path: tuple  # path in our params pytree
  hf_key: str  # may contain {i} for the layer index
  hf_shape: Callable[[ModelConfig], tuple]
  to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
  to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]
  per_layer: bool = True


def _leaves(cfg: ModelConfig) -> list[_Leaf]:
  """The tensors of `cfg`'s architecture (biases, q/k norms and an untied head only where its switches say)."""
  def heads_in(n_attr):  # [n*D, H] <-> [H, n, D]
    return (lambda c: (getattr(c, n_attr) * c.head_dim, c.hidden_size),
            lambda w, c: w.T.reshape(c.hidden_size, getattr(c, n_attr), c.head_dim),
            lambda w, c: w.reshape(c.hidden_size, -1).T)

  def heads_bias(n_attr):  # [n*D] <-> [n, D]
    return (lambda c: (getattr(c, n_attr) * c.head_dim,),
            lambda w, c: w.reshape(getattr(c, n_attr), c.head_dim),
            lambda w, c: w.reshape(-1))

  t = lambda w, c: w.T  # noqa: E731  plain transpose both ways
  same = lambda w, c: w  # noqa: E731
  pre = "model.layers.{i}."
  leaves = [
      _Leaf(("embed",), "model.embed_tokens.weight", lambda c: (c.vocab_size, c.hidden_size), same, same, False),
      _Leaf(("lm_head",), _HEAD_KEY, lambda c: (c.vocab_size, c.hidden_size), t, t, False),
      _Leaf(("final_norm", "scale"), "model.norm.weight", lambda c: (c.hidden_size,), same, same, False),
      _Leaf(("layers", "attn", "q"), pre + "self_attn.q_proj.weight", *heads_in("num_heads")),
      _Leaf(("layers", "attn", "k"), pre + "self_attn.k_proj.weight", *heads_in("num_kv_heads")),
      _Leaf(("layers", "attn", "v"), pre + "self_attn.v_proj.weight", *heads_in("num_kv_heads")),
      _Leaf(("layers", "attn", "o"), pre + "self_attn.o_proj.weight",
            lambda c: (c.hidden_size, c.num_heads * c.head_dim),
            lambda w, c: w.T.reshape(c.num_heads, c.head_dim, c.hidden_size),
            lambda w, c: w.reshape(-1, c.hidden_size).T),
      _Leaf(("layers", "attn_norm", "scale"), pre + "input_layernorm.weight", lambda c: (c.hidden_size,), same, same),
      _Leaf(("layers", "mlp_norm", "scale"), pre + "post_attention_layernorm.weight", lambda c: (c.hidden_size,),
            same, same),
      _Leaf(("layers", "mlp", "gate"), pre + "mlp.gate_proj.weight", lambda c: (c.intermediate_size, c.hidden_size),
            t, t),
      _Leaf(("layers", "mlp", "up"), pre + "mlp.up_proj.weight", lambda c: (c.intermediate_size, c.hidden_size), t, t),
      _Leaf(("layers", "mlp", "down"), pre + "mlp.down_proj.weight", lambda c: (c.hidden_size, c.intermediate_size),
            t, t),
      _Leaf(("layers", "attn", "q_bias"), pre + "self_attn.q_proj.bias", *heads_bias("num_heads")),
      _Leaf(("layers", "attn", "k_bias"), pre + "self_attn.k_proj.bias", *heads_bias("num_kv_heads")),
      _Leaf(("layers", "attn", "v_bias"), pre + "self_attn.v_proj.bias", *heads_bias("num_kv_heads")),
      _Leaf(("layers", "attn", "q_norm", "scale"), pre + "self_attn.q_norm.weight", lambda c: (c.head_dim,), same,
            same),
      _Leaf(("layers", "attn", "k_norm", "scale"), pre + "self_attn.k_norm.weight", lambda c: (c.head_dim,), same,
            same),
  ]
  absent = {("lm_head",): cfg.tie_embeddings, **{("layers", "attn", f"{n}_bias"): not cfg.qkv_bias for n in "qkv"},
            **{("layers", "attn", f"{n}_norm", "scale"): not cfg.qk_norm for n in "qk"}}
  return [leaf for leaf in leaves if not absent.get(leaf.path, False)]


def _hf_keys(leaf: _Leaf, cfg: ModelConfig) -> list[str]:
  return [leaf.hf_key.format(i=i) for i in range(cfg.num_layers)] if leaf.per_layer else [leaf.hf_key]


# ---------------------------------------------------------------------------------------------------------- config


def config_from_hf(hf: dict, source: str = CONFIG_FILE, **overrides) -> ModelConfig:
  """An HF config.json dict (Llama, Qwen2, Qwen3) -> ModelConfig. Rejects what the decoder cannot represent (other
  architectures, MoE, sliding-window attention, RoPE types other than default / llama3, biases beyond Qwen2's),
  naming the key and the file. Reads the transformers 4.x keys (rope_theta, rope_scaling) and 5.x (rope_parameters).
  """
  archs = hf.get("architectures") or []
  by_type = {f.model_type: (name, f) for name, f in HF_FAMILIES.items()}
  if hf.get("model_type") not in by_type or (archs and archs != [by_type[hf["model_type"]][1].architecture]):
    known = ", ".join(f"{f.architecture} (model_type {f.model_type!r})" for f in HF_FAMILIES.values())
    raise ValueError(f"{source}: unsupported architecture (architectures={archs}, model_type="
                     f"{hf.get('model_type')!r}); supported: {known}")
  name, family = by_type[hf["model_type"]]

  def need(key):
    if key not in hf:
      raise KeyError(f"{source}: missing required key {key!r}")
    return hf[key]

  def expect(key, want, default):
    if hf.get(key, default) != want:
      raise ValueError(f"{source}: {key}={hf.get(key)!r} is not supported (need {want!r})")

  expect("hidden_act", "silu", "silu")
  expect("mlp_bias", False, False)
  if family.has_attention_bias_key:  # Llama's and Qwen3's attention_bias would bias o_proj too
    expect("attention_bias", False, False)
  for key in ("num_experts", "num_local_experts", "n_routed_experts"):  # MoE variants of the families
    if hf.get(key):
      raise ValueError(f"{source}: {key}={hf[key]!r}: mixture-of-experts layers are not supported")
  if family.has_sliding_window:
    expect("use_sliding_window", False, False)
    kinds = sorted(set(hf.get("layer_types") or ["full_attention"]))
    if kinds != ["full_attention"]:
      raise ValueError(f"{source}: layer_types={kinds} is not supported (need only 'full_attention')")
  rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  rope_key = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ("default", "llama3"):
    raise ValueError(f"{source}: {rope_key}.rope_type={rope_type!r} is not supported (RoPE types: 'default', "
                     f"'llama3')")
  if rope.get("partial_rotary_factor", 1.0) != 1.0:
    raise ValueError(f"{source}: {rope_key}.partial_rotary_factor={rope['partial_rotary_factor']!r} is not supported")
  scaling = {}
  if rope_type == "llama3":
    for ours, key, kind in (("rope_factor", "factor", float), ("rope_low_freq_factor", "low_freq_factor", float),
                            ("rope_high_freq_factor", "high_freq_factor", float),
                            ("rope_original_max_positions", "original_max_position_embeddings", int)):
      if key not in rope:
        raise KeyError(f"{source}: {rope_key} of rope_type 'llama3' lacks {key!r}")
      scaling[ours] = kind(rope[key])
  theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
  heads = need("num_attention_heads")
  kw = dict(vocab_size=need("vocab_size"), hidden_size=need("hidden_size"),
            intermediate_size=need("intermediate_size"), num_layers=need("num_hidden_layers"), num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=hf.get("head_dim") or family.default_head_dim,
            max_positions=need("max_position_embeddings"), rope_theta=float(theta),
            rms_norm_eps=float(need("rms_norm_eps")), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            rope_type=rope_type, **scaling, **FAMILIES[name])
  return ModelConfig.resolve({**kw, **overrides}, source)


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
  """ModelConfig -> the config.json of its family (read by transformers 4.x and 5.x)."""
  family = HF_FAMILIES[cfg.family]
  rope = {"rope_type": cfg.rope_type}
  if cfg.rope_type == "llama3":
    rope.update(factor=cfg.rope_factor, low_freq_factor=cfg.rope_low_freq_factor,
                high_freq_factor=cfg.rope_high_freq_factor,
                original_max_position_embeddings=cfg.rope_original_max_positions)
  out = {
      "architectures": [family.architecture], "model_type": family.model_type, "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
      "max_position_embeddings": cfg.max_positions, "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
      "rope_scaling": None if cfg.rope_type == "default" else rope,
      "rope_parameters": {**rope, "rope_theta": cfg.rope_theta},
      "hidden_act": "silu", "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": dtype, "dtype": dtype,
  }
  if family.has_attention_bias_key:
    out["attention_bias"] = False
  if family.model_type == "llama":
    out["mlp_bias"] = False
  if family.has_sliding_window:
    out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers,
               layer_types=["full_attention"] * cfg.num_layers)
  return out


# ---------------------------------------------------------------------------------------------------------- import


class _Reader:
  """Lazy access to the tensors of a checkpoint directory, one tensor at a time."""

  def __init__(self, path: str):
    index = os.path.join(path, INDEX_FILE)
    if os.path.exists(index):
      with open(index) as f:
        weight_map = json.load(f).get("weight_map")
      if not isinstance(weight_map, dict):
        raise ValueError(f"{index}: no 'weight_map' object")
      files = sorted(set(weight_map.values()))
    elif os.path.exists(os.path.join(path, SINGLE_FILE)):
      weight_map, files = None, [SINGLE_FILE]
    else:
      raise FileNotFoundError(f"{path}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
    self.path = path
    self.handles = {}
    self.where = {}  # key -> file name, from the files' own headers
    for name in files:
      full = os.path.join(path, name)
      if not os.path.exists(full):
        raise FileNotFoundError(f"{full}: listed in {INDEX_FILE} but missing")
      self.handles[name] = safe_open(full, framework="numpy")
      for key in self.handles[name].keys():
        self.where[key] = name
    for key, name in (weight_map or {}).items():
      if self.where.get(key) != name:
        raise KeyError(f"{index}: maps tensor {key!r} to {name}, but that file does not contain it")

  def close(self) -> None:
    for handle in self.handles.values():
      handle.__exit__(None, None, None)
    self.handles = {}

  def file(self, key: str) -> str:
    return os.path.join(self.path, self.where[key])

  def shape(self, key: str) -> tuple:
    return tuple(self.handles[self.where[key]].get_slice(key).get_shape())

  def read(self, key: str) -> np.ndarray:
    handle = self.handles[self.where[key]]
    if handle.get_slice(key).get_dtype() == "BF16":  # numpy cannot name bfloat16, so safetensors' numpy API fails
      return _read_bf16(self.file(key), key)
    return handle.get_tensor(key)


def _read_bf16(filename: str, key: str) -> np.ndarray:
  """One BF16 tensor from a safetensors file, via its header, as ml_dtypes.bfloat16."""
  with open(filename, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
    info = header[key]
    start, end = info["data_offsets"]
    f.seek(8 + n + start)
    buf = f.read(end - start)
  return np.frombuffer(buf, ml_dtypes.bfloat16).reshape(info["shape"])


def _set(tree: dict, path: tuple, value) -> None:
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def _get(tree: dict, path: tuple):
  for p in path:
    tree = tree[p]
  return tree


def from_hf(path: str, shardings: Optional[Any] = None, **overrides) -> tuple[ModelConfig, dict]:
  """An HF checkpoint directory (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM) -> (ModelConfig, params).

  overrides: ModelConfig fields to set on top of the checkpoint's shapes (e.g. dtype="bfloat16", remat="full",
  param_dtype="bfloat16" to store params in bf16). shardings: optional pytree of jax Shardings matching the params
  (e.g. `sharding.param_shardings(cfg, mesh)`); each parameter is placed as soon as it is built.
  Raises on unknown architectures, missing/unexpected tensors and shape mismatches, naming tensor and file.
  """
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path}: not found (is {path} an HF checkpoint directory?)")
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), config_path, **overrides)
  reader = _Reader(path)
  try:
    return cfg, _load_params(cfg, reader, path, config_path, shardings)
  finally:
    reader.close()


def _load_params(cfg: ModelConfig, reader: _Reader, path: str, config_path: str, shardings) -> dict:
  leaves = _leaves(cfg)

  expected = {key for leaf in leaves for key in _hf_keys(leaf, cfg)}
  # A tied checkpoint may still carry the head (some writers save it): accepted only if it is the embedding.
  tied_head = cfg.tie_embeddings and _HEAD_KEY in reader.where
  unexpected = sorted(k for k in reader.where if k not in expected and not k.endswith(_IGNORED_SUFFIXES)
                      and not (tied_head and k == _HEAD_KEY))
  if unexpected:
    listed = ", ".join(f"{k!r} in {reader.file(k)}" for k in unexpected[:5])
    more = f" (and {len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
    raise KeyError(f"{path}: unexpected tensor(s) for a {cfg.num_layers}-layer {HF_FAMILIES[cfg.family].architecture}"
                   f" as {config_path} describes it: {listed}{more}")
  missing = sorted(expected - set(reader.where))
  if missing:
    raise KeyError(f"{path}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
  for leaf in leaves:  # check every shape before reading anything
    want = leaf.hf_shape(cfg)
    for key in _hf_keys(leaf, cfg):
      if reader.shape(key) != want:
        raise ValueError(f"{reader.file(key)}: tensor {key!r} has shape {reader.shape(key)}, expected {want} "
                         f"from {config_path}")

  abstract = abstract_params(cfg)
  params = {}
  for leaf in leaves:
    spec = _get(abstract, leaf.path)
    host = np.empty(spec.shape, spec.dtype)
    keys = _hf_keys(leaf, cfg)
    for i, key in enumerate(keys):
      value = leaf.to_ours(reader.read(key), cfg)
      if leaf.per_layer:
        host[i] = value
      else:
        host[...] = value
    if leaf.path == ("embed",) and tied_head and not np.array_equal(reader.read(_HEAD_KEY), host):
      raise ValueError(f"{reader.file(_HEAD_KEY)}: tensor {_HEAD_KEY!r} differs from the embedding, but {config_path} "
                       f"says tie_word_embeddings=true")
    sharding = _get(shardings, leaf.path) if shardings is not None else None
    _set(params, leaf.path, jax.device_put(host, sharding))
    del host
  return params


# ---------------------------------------------------------------------------------------------------------- export


def _parse_size(size) -> int:
  if isinstance(size, int):
    return size
  s = str(size).strip().upper()
  for unit, mult in (("GIB", 2**30), ("MIB", 2**20), ("KIB", 2**10), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3),
                     ("B", 1)):
    if s.endswith(unit):
      return int(float(s[:-len(unit)]) * mult)
  return int(s)


def to_hf(cfg: ModelConfig, params: dict, path: str, max_shard_size="5GB", dtype: Optional[str] = None) -> None:
  """Writes params as an HF checkpoint of cfg.family (LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM; a
  tied head is not written, as transformers saves it): config.json plus safetensors shards of at most
  `max_shard_size` (int bytes or "5GB"/"500MB"/...; one tensor larger than that gets its own shard) and, when there
  is more than one shard, model.safetensors.index.json. dtype: tensor dtype on disk (default: the params' dtype).

  Tensors are pulled to host one at a time; at most one shard is held in host memory.
  """
  os.makedirs(path, exist_ok=True)
  limit = _parse_size(max_shard_size)
  leaves = _leaves(cfg)
  out_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else (dtype or _get(params, ("embed",)).dtype))

  # Plan shards from shapes alone, in HF's usual order: embedding, layer by layer, final norm, head.
  globals_ = [leaf for leaf in leaves if not leaf.per_layer]
  items = [(leaf.hf_key, leaf, None) for leaf in globals_ if leaf.path == ("embed",)]
  items += [(leaf.hf_key.format(i=i), leaf, i) for i in range(cfg.num_layers) for leaf in leaves if leaf.per_layer]
  items += [(leaf.hf_key, leaf, None) for leaf in globals_ if leaf.path != ("embed",)]
  nbytes = lambda leaf: int(np.prod(leaf.hf_shape(cfg))) * out_dtype.itemsize  # noqa: E731
  shards, size = [[]], 0
  for item in items:
    if shards[-1] and size + nbytes(item[1]) > limit:
      shards.append([])
      size = 0
    shards[-1].append(item)
    size += nbytes(item[1])

  names = ([SINGLE_FILE] if len(shards) == 1 else
           [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
  weight_map = {}
  for name, shard in zip(names, shards):
    tensors = {}
    for key, leaf, i in shard:
      value = _get(params, leaf.path)
      value = np.asarray(value[i] if i is not None else value)
      tensors[key] = np.ascontiguousarray(leaf.to_hf(value, cfg).astype(out_dtype))
      weight_map[key] = name
    write_atomic(os.path.join(path, name), lambda tmp, t=tensors: save_file(t, tmp, metadata={"format": "pt"}))
    del tensors

  # A stale single file or index from an earlier export would shadow or contradict what was just written.
  stale = INDEX_FILE if len(shards) == 1 else SINGLE_FILE
  if os.path.exists(os.path.join(path, stale)):
    os.remove(os.path.join(path, stale))
  if len(shards) > 1:
    index = {"metadata": {"total_size": sum(nbytes(item[1]) for item in items)},
             "weight_map": dict(sorted(weight_map.items()))}
    write_json_atomic(os.path.join(path, INDEX_FILE), index, indent=2)
  dtype_name = "bfloat16" if out_dtype == np.dtype(ml_dtypes.bfloat16) else out_dtype.name
  write_json_atomic(os.path.join(path, CONFIG_FILE), config_to_hf(cfg, dtype_name), indent=2)
