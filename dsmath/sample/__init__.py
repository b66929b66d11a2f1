"""Sampling: decoding strategies, the jitted KV-cache rollout engine (static batch, `engine`; continuous batching,
`continuous`), tool-integrated generation, text generators."""
from dsmath.sample.engine import (FINISH_REASONS, SampleOutput, bucket_length, decode, extend, generate, prefill,
                                  stop_sequence_array, stop_string_sequences)
from dsmath.sample.strategies import STRATEGIES, Greedy, Temperature, TopK, TopP, strategy_from_config
from dsmath.sample.tools import ToolConfig, ToolOutput, generate_with_tools
from dsmath.sample.text import GenerateFn, text_generator
