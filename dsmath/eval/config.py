"""The eval stage's schema (frozen dataclasses resolved by dsmath.config): its defaults are the only eval defaults;
`dsmath.eval.evaluate.evaluate` takes its keyword defaults from EvalConfig.

EvalStageConfig (configs/eval_*.py start from `dsmath.eval.checkpoint_eval.default_config()`):
  checkpoint   a finished run (its directory, checkpoints/ or one step directory): run.json gives the model config
               and the tokenizer, the checkpoint the params.
  sampling     SamplingConfig: the JAX sampler's strategy, lengths, seed, batch, tool rounds.
  eval         EvalConfig: benchmarks, prompt style, K values, grading, bootstrap, sandbox limits.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Mapping

from dsmath import config as config_lib
from dsmath.data.prompts import PROMPT_STYLES


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  # dsmath.sample.strategy_from_config: {name: greedy | temperature | top_p | top_k, ...its parameters}
  strategy: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({"name": "greedy"}))
  max_new_tokens: int = 256
  seed: int = 0
  batch_rows: int = 64
  tool_rounds: int = 0  # > 0: tool-integrated generation (python blocks run in the sandbox)

  def __post_init__(self):
    from dsmath.sample import strategy_from_config
    try:
      strategy_from_config(self.strategy)
    except (KeyError, TypeError) as e:
      raise ValueError(f"strategy {dict(self.strategy)}: {e}") from None
    if self.max_new_tokens < 1 or self.batch_rows < 1 or self.tool_rounds < 0:
      raise ValueError("max_new_tokens and batch_rows must be >= 1 and tool_rounds >= 0")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  benchmarks: tuple[str, ...] = ("gsm8k",)  # keys of dsmath.data.benchmarks.LOADERS
  num_examples: int = 32  # a seeded subset of each benchmark; 0 = every problem
  prompt_style: str = "zero_shot"  # dsmath.data.prompts.PROMPT_STYLES
  chat: bool = False  # each prompt as a user turn in the tokenizer's chat template (dsmath.data.tokenizer.prompt_ids)
  k_values: tuple[int, ...] = (1,)
  num_samples: int = 0  # samples per problem; 0 = max(k_values)
  grading_mode: Literal["math_verify", "paper"] = "math_verify"
  num_shots: int = 4  # few_shot prompts
  seed: int = 0  # the subset and the few-shot examples
  bootstrap_resamples: int = 1000
  grader_workers: int = 2
  sandbox: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # dsmath.grading.sandbox limits
  # {benchmark: loader keyword arguments}, e.g. the synthetic task's split, size and difficulty
  benchmark_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.prompt_style not in PROMPT_STYLES:
      raise ValueError(f"prompt_style must be one of {list(PROMPT_STYLES)}, got {self.prompt_style!r}")
    if not self.benchmarks:
      raise ValueError("benchmarks is empty")
    n = self.num_samples or max(self.k_values, default=0)
    if not self.k_values or any(k < 1 or k > n for k in self.k_values):
      raise ValueError(f"k_values {list(self.k_values)} must be non-empty and lie in [1, num_samples={n}]")
    unknown = sorted(set(self.benchmark_options) - set(self.benchmarks))
    if unknown:
      raise ValueError(f"benchmark_options names {unknown}, which are not in benchmarks {list(self.benchmarks)}")


@dataclasses.dataclass(frozen=True)
class EvalStageConfig:
  job: Literal["eval"] = "eval"
  workdir: str = ""
  checkpoint: str = ""
  sampling: SamplingConfig = config_lib.sub(SamplingConfig)
  eval: EvalConfig = config_lib.sub(EvalConfig)
