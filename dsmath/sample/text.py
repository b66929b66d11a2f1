"""Text in, text out: a `generate_fn(prompts, num_samples) -> [[str] * num_samples] * len(prompts)` over the sampler.

The evaluation harness and the recipe's reports take any such function; this one runs the JAX sampler in batches.
"""
from typing import Callable, Optional, Sequence

import jax

from dsmath.data.tokenizer import prompt_ids
from dsmath.model import ModelConfig
from dsmath.sample import engine
from dsmath.sample.engine import generate
from dsmath.sample.strategies import Greedy
from dsmath.sample.tools import ToolConfig, generate_with_tools

GenerateFn = Callable[[Sequence[str], int], list[list[str]]]


QUEUED_PER_SLOT = 4  # continuous batching: rows queued per call = 4 x the slots (the prompt bank holds their prompts)


def text_generator(cfg: ModelConfig, params: dict, tokenizer, *, max_new_tokens: int, strategy=Greedy(),
                   rng: Optional[jax.Array] = None, batch_rows: int = 64, chat: bool = False,
                   stop_strings: Sequence[str] = (), tools: Optional[ToolConfig] = None, mesh=None,
                   rules=None, batching: str = "auto") -> GenerateFn:
  """Returns generate_fn; prompts are encoded with `tokenizer` (`dsmath.data.tokenizer.prompt_ids`: plain, or with
  chat, in its chat template) and completions end at its stop ids. batch_rows bounds the rows (prompts x samples)
  decoded at once. Row r of the whole request draws with fold_in(rng, r), so batching does not change what is
  sampled.

  batching (`dsmath.sample.generate`): "static" decodes calls of batch_rows rows, each until its longest row ends;
  "continuous" (and "auto", the default; tool rounds always run static) keeps batch_rows cache slots busy over calls
  of QUEUED_PER_SLOT x batch_rows rows."""
  rng = jax.random.key(0) if rng is None else rng
  if batching not in engine.BATCHING:
    raise ValueError(f"batching must be one of {engine.BATCHING}, got {batching!r}")
  static = tools is not None or batching == "static"

  def generate_fn(prompts: Sequence[str], num_samples: int) -> list[list[str]]:
    ids = [prompt_ids(tokenizer, p, chat) for p in prompts]
    per_call = max(1, batch_rows * (1 if static else QUEUED_PER_SLOT) // num_samples)
    out: list[list[str]] = []
    for start in range(0, len(ids), per_call):
      chunk = ids[start:start + per_call]
      common = dict(max_new_tokens=max_new_tokens, strategy=strategy, num_samples=num_samples, rng=rng,
                    pad_id=tokenizer.pad_id, mesh=mesh, rules=rules, row_offset=start * num_samples)
      if tools is not None:
        res = generate_with_tools(cfg, params, chunk, tokenizer=tokenizer, tools=tools, **common)
      else:
        res = generate(cfg, params, chunk, eos_id=tokenizer.stop_ids, stop_strings=stop_strings, tokenizer=tokenizer,
                       batching="static" if static else "continuous", slots=None if static else batch_rows,
                       **common)
      texts = list(res.texts)
      out.extend(texts[i * num_samples:(i + 1) * num_samples] for i in range(len(chunk)))
    return out

  return generate_fn
