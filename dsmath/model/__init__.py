"""The DeepSeekMath decoder: config, pure functions over params, sharding, HF interop."""
from dsmath.model.api import (abstract_params, count_params, default_positions, forward_with_cache, hidden_states,
                              init_cache, init_params, is_decode_params, lm_head, logits, param_logical_axes,
                              decode_params)
from dsmath.model.config import PRESETS, ModelConfig
from dsmath.model.hf import from_hf, to_hf
