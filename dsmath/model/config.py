"""Model shapes: one frozen dataclass and the named presets the paper, the benchmarks and math-RL bases use."""
import dataclasses
from typing import Any, Mapping

from dsmath.model.rope import ROPE_TYPES

# The HF architecture family each setting of the attention switches is (dsmath.model.hf reads and writes them).
FAMILIES = {"llama": {"qkv_bias": False, "qk_norm": False},  # LLaMA-2, DeepSeek(-Coder/-Math), Llama 3
            "qwen2": {"qkv_bias": True, "qk_norm": False},  # Qwen2, Qwen2.5, Qwen2.5-Math
            "qwen3": {"qkv_bias": False, "qk_norm": True}}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A LLaMA-style decoder. The defaults are DeepSeek-Coder-v1.5 / DeepSeekMath 7B; the switches below (all off by
  default) give Qwen2 / Qwen2.5, Qwen3 and Llama 3 from the same code."""
  vocab_size: int = 102400
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_layers: int = 30
  num_heads: int = 32
  num_kv_heads: int = 32
  head_dim: int = 0  # 0 means hidden_size // num_heads
  max_positions: int = 4096
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6
  dtype: str = "float32"  # compute dtype: float32 or bfloat16
  param_dtype: str = "float32"
  remat: str = "none"  # a key of dsmath.model.transformer.REMAT_POLICIES
  # Causal attention in query blocks of this many tokens, skipping the all-masked blocks above the diagonal (exact;
  # 0 = one dense [T, T] block). Also bounds the score buffer at [block, T] instead of [T, T].
  attention_block: int = 128
  # Architecture switches (HF config keys in brackets, read by dsmath.model.hf); together they make `family`.
  qkv_bias: bool = False  # biases on the q, k, v projections (Qwen2 / Qwen2.5)
  qk_norm: bool = False  # RMSNorm over head_dim on each query and key head before RoPE (Qwen3)
  tie_embeddings: bool = False  # the LM head is the input embedding, transposed [tie_word_embeddings]
  rope_type: str = "default"  # a key of dsmath.model.rope.ROPE_TYPES (default | llama3) [rope_type]
  # llama3 RoPE scaling [factor, low_freq_factor, high_freq_factor, original_max_position_embeddings]
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_positions: int = 8192

  def __post_init__(self):
    if self.head_dim == 0:
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"model.num_heads={self.num_heads} must be a multiple of model.num_kv_heads={self.num_kv_heads}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"model.dtype must be float32 or bfloat16, got {self.dtype!r}")
    if self.qkv_bias and self.qk_norm:
      raise ValueError("model.qkv_bias and model.qk_norm together are no HF architecture (Qwen3's attention_bias "
                       "biases o_proj too); set one of them")
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(f"model.rope_type must be one of {sorted(ROPE_TYPES)}, got {self.rope_type!r}")
    if self.rope_type == "llama3" and not (self.rope_factor > 0 and self.rope_original_max_positions > 0
                                           and self.rope_high_freq_factor > self.rope_low_freq_factor > 0):
      raise ValueError("model.rope_type llama3 needs rope_factor > 0, rope_high_freq_factor > rope_low_freq_factor > 0 "
                       "and rope_original_max_positions > 0")

  @property
  def family(self) -> str:
    """The HF architecture family of the switches: llama | qwen2 | qwen3 (a key of FAMILIES)."""
    return next(name for name, switches in FAMILIES.items()
                if all(getattr(self, k) == v for k, v in switches.items()))

  @classmethod
  def resolve(cls, spec: Any, path: str = "config.model") -> "ModelConfig":
    """A config field's model spec ({preset, overrides...} or a ModelConfig) with every key type-checked, errors
    naming the full key path (the `resolve` hook of dsmath.config)."""
    from dsmath.config import ConfigError, checked_fields, resolve, to_dict
    if isinstance(spec, cls):
      return spec
    d = to_dict(spec)
    if not isinstance(d, Mapping):
      raise ConfigError(f"{path} must be a mapping ({{preset: name, overrides...}}), got {type(spec).__name__}")
    d = dict(d)
    preset = d.pop("preset", "")
    if not isinstance(preset, str):
      raise ConfigError(f"{path}.preset must be str, got {type(preset).__name__} {preset!r}")
    if preset and preset not in PRESETS:
      raise ConfigError(f"{path}.preset={preset!r} is unknown; known presets: {sorted(PRESETS)}")
    base = dataclasses.asdict(PRESETS[preset]) if preset else {}
    derived = not preset or PRESETS[preset].head_dim * PRESETS[preset].num_heads == PRESETS[preset].hidden_size
    if ("hidden_size" in d or "num_heads" in d) and "head_dim" not in d and derived:
      base["head_dim"] = 0  # derived again from the overridden shapes (a preset's own head_dim, as Qwen3's, stays)
    return resolve(cls, {**base, **checked_fields(cls, d, path)}, path)

  @classmethod
  def preset(cls, name: str, **overrides) -> "ModelConfig":
    if name not in PRESETS:
      raise KeyError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)

  def num_params(self) -> int:
    """Exact parameter count (embedding + layers + final norm + the head unless tied)."""
    h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h
    per_layer += (q + 2 * kv) * self.qkv_bias + 2 * self.head_dim * self.qk_norm
    return (1 if self.tie_embeddings else 2) * self.vocab_size * h + self.num_layers * per_layer + h


PRESETS = {
    # CPU unit tests: compiles in seconds.
    "tiny": ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=172, num_layers=2, num_heads=4,
                        num_kv_heads=2, max_positions=512),
    # The standard benchmark shapes (../shared/BENCHMARK-SHAPES.md); "M" is the "~60M config".
    "S": ModelConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4,
                     num_kv_heads=4, max_positions=1024),
    "M": ModelConfig(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_layers=8, num_heads=8,
                     num_kv_heads=8, max_positions=2048),
    "L": ModelConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2752, num_layers=12, num_heads=16,
                     num_kv_heads=16, max_positions=2048),
    # The paper's 1.3B ablation model (DeepSeek-Coder 1.3B shapes).
    "1.3b": ModelConfig(vocab_size=102400, hidden_size=2048, intermediate_size=5504, num_layers=24, num_heads=16,
                        num_kv_heads=16, max_positions=4096),
    # DeepSeek-Coder-v1.5 7B / DeepSeekMath 7B: 6,910,365,696 parameters.
    "7b": ModelConfig(),
    "deepseek-math-7b": ModelConfig(),
    # The bases of today's math-RL work, with their published config.json shapes (counts checked against HF
    # transformers in tests/test_model_families.py).
    "qwen2.5-math-1.5b": ModelConfig(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                     num_layers=28, num_heads=12, num_kv_heads=2, max_positions=4096,
                                     rope_theta=10000.0, rms_norm_eps=1e-6, qkv_bias=True, tie_embeddings=True),
    "qwen2.5-math-7b": ModelConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                   num_layers=28, num_heads=28, num_kv_heads=4, max_positions=4096, rope_theta=10000.0,
                                   rms_norm_eps=1e-6, qkv_bias=True),
    "qwen3-0.6b": ModelConfig(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                              num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, max_positions=40960,
                              rope_theta=1000000.0, rms_norm_eps=1e-6, qk_norm=True, tie_embeddings=True),
    "qwen3-1.7b": ModelConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                              num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, max_positions=40960,
                              rope_theta=1000000.0, rms_norm_eps=1e-6, qk_norm=True, tie_embeddings=True),
    "llama-3.2-1b": ModelConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                                num_heads=32, num_kv_heads=8, max_positions=131072, rope_theta=500000.0,
                                rms_norm_eps=1e-5, tie_embeddings=True, rope_type="llama3", rope_factor=32.0,
                                rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_positions=8192),
    "llama-3.1-8b": ModelConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                                num_heads=32, num_kv_heads=8, max_positions=131072, rope_theta=500000.0,
                                rms_norm_eps=1e-5, rope_type="llama3", rope_factor=8.0, rope_low_freq_factor=1.0,
                                rope_high_freq_factor=4.0, rope_original_max_positions=8192),
}
