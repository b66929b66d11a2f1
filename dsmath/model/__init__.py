"""The DeepSeekMath decoder: config, pure functions over params, sharding, HF interop."""
from dsmath.model.api import (abstract_params, count_params, decode_params, default_positions, forward_with_cache,
                              head_weight, hidden_states, init_cache, init_params, is_decode_params, lm_head, logits,
                              param_logical_axes)
from dsmath.model.config import PRESETS, ModelConfig
from dsmath.model.hf import config_from_hf, from_hf, to_hf
