"""Model shapes: one frozen dataclass and the named presets the paper and the benchmarks use."""
import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A LLaMA-style decoder (DeepSeek-Coder-v1.5 / DeepSeekMath 7B family)."""
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

  def __post_init__(self):
    if self.head_dim == 0:
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"model.num_heads={self.num_heads} must be a multiple of model.num_kv_heads={self.num_kv_heads}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"model.dtype must be float32 or bfloat16, got {self.dtype!r}")

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
    if ("hidden_size" in d or "num_heads" in d) and "head_dim" not in d:
      base["head_dim"] = 0  # derived again from the overridden shapes
    return resolve(cls, {**base, **checked_fields(cls, d, path)}, path)

  @classmethod
  def preset(cls, name: str, **overrides) -> "ModelConfig":
    if name not in PRESETS:
      raise KeyError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)

  def num_params(self) -> int:
    """Exact parameter count (embedding + layers + final norm + untied head)."""
    h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h
    return 2 * self.vocab_size * h + self.num_layers * per_layer + h


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
}
