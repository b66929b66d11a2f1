"""Tool-integrated generation (the paper's tool-integrated reasoning): the model writes a python block, the program
runs in the evaluation sandbox, its output is appended inside an output block and generation continues.

A Python loop over rounds (never over tokens): decode until every row has hit EOS, its budget, or the closing fence
(`dsmath.eval.BLOCK_CLOSE`); run the closed programs (in parallel, sandboxed); prefill "pending token + output block"
into the same KV cache (`engine.extend`), and decode again. The delimiters are the evaluation's own
(`dsmath.data.prompts`), so evaluation and RL see the same text format.
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.data import prompts as eval_prompts
from dsmath.grading import sandbox
from dsmath.sample import engine
from dsmath.sample.strategies import Greedy


@dataclasses.dataclass(frozen=True)
class ToolConfig:
  """max_rounds: pauses (program executions) per sample; max_output_tokens: cap of an output block in tokens (cut
  in the middle, keeping its delimiters); max_output_chars: cap before tokenizing; timeout_s / memory_mb: sandbox
  limits per program; isolation / python: the sandbox's mode and interpreter (`dsmath.grading.sandbox`)."""
  max_rounds: int = 4
  max_output_tokens: int = 256
  max_output_chars: int = 2000
  timeout_s: float = 5.0
  memory_mb: int = 1024
  isolation: str = "auto"
  python: Optional[str] = None

  def __post_init__(self):
    if self.max_rounds < 0:
      raise ValueError(f"tools.max_rounds must be >= 0, got {self.max_rounds}")
    if self.max_output_tokens < 1:
      raise ValueError(f"tools.max_output_tokens must be >= 1, got {self.max_output_tokens}")


@dataclasses.dataclass(frozen=True)
class ToolOutput:
  """R = num_prompts * num_samples rows (prompt-major). Completions interleave model and tool tokens:

  tokens [R, T] int32 (pad after lengths); model_mask [R, T] bool: True where the model sampled the token (the
  tokens an RL loss may train on), False for appended output blocks and padding; logprobs / model_logprobs [R, T]:
  as in SampleOutput, 0 where model_mask is False; lengths [R]; finish_reasons: 'eos' | 'stop' (paused at a closed
  block when rounds ran out) | 'length' (token budget spent); rounds [R]: programs executed; executions: per row the
  sandbox ExecResults in order; texts: decoded completions.
  """
  tokens: np.ndarray
  model_mask: np.ndarray
  logprobs: np.ndarray
  model_logprobs: np.ndarray
  lengths: np.ndarray
  finish_reasons: tuple
  rounds: np.ndarray
  executions: tuple
  texts: tuple
  num_samples: int


def output_text(result: sandbox.ExecResult) -> str:
  """What the model sees of a run: stdout, plus the error's last line when the program failed."""
  if result.ok:
    return result.stdout
  lines = [l for l in result.stderr.strip().splitlines() if not l.startswith("\x00")]
  tail = lines[-1] if lines else result.message
  return result.stdout + tail


def closed_program(text: str) -> Optional[str]:
  """The python program whose closing fence ends `text`, else None (a fence closing something else)."""
  prog = eval_prompts.extract_last_program(text)
  if prog is None:
    return None
  block = eval_prompts.PYTHON_OPEN + prog + eval_prompts.BLOCK_CLOSE
  return prog if (text + "\n").endswith(block) or text.endswith(block) else None


def _output_ids(tokenizer, result: sandbox.ExecResult, tools: ToolConfig) -> list[int]:
  ids = list(tokenizer.encode(eval_prompts.format_output_block(output_text(result), tools.max_output_chars)))
  cap = tools.max_output_tokens
  return ids if len(ids) <= cap else ids[:cap // 2] + ids[len(ids) - (cap - cap // 2):]


def generate_with_tools(cfg: model.ModelConfig, params: dict, prompts, *, tokenizer, max_new_tokens: int,
                        strategy=Greedy(), num_samples: int = 1, eos_id=None, tools: ToolConfig = ToolConfig(),
                        rng: Optional[jax.Array] = None, prompt_lengths=None, pad_id: int = 0, mesh=None, rules=None,
                        min_bucket: int = 16, row_offset: int = 0, unroll_layers: Optional[bool] = None,
                        decode_segments: Optional[int] = None) -> ToolOutput:
  """Like `engine.generate`, pausing at each closed python block to run it and append its output.

  max_new_tokens: budget of model-sampled tokens per sample over all rounds (appended outputs do not count).
  tokenizer: encode/decode (dsmath.data.tokenizer). eos_id defaults to the tokenizer's stop ids.
  decode_segments: cache windows per round (see `engine.generate`); each round reads only the first slots of the
  cache, which is sized for all rounds.

  Raises `sandbox.SandboxUnavailable` (before generating anything) when the sandbox cannot run programs here; an
  infrastructure failure is never shown to the model as a program's output.
  """
  rng = engine.check_sampling_args(max_new_tokens, num_samples, strategy, rng)
  if tools.max_rounds > 0:
    sandbox.check_sandbox(tools.isolation, tools.python)
  if eos_id is None:
    eos_id = tokenizer.stop_ids
  layout = engine.Layout(mesh, rules)
  chunk = tools.max_output_tokens + 1  # pending token + output block
  max_context = max_new_tokens + tools.max_rounds * tools.max_output_tokens
  tokens, lengths, num_prompts = engine.prepare_prompts(cfg, prompts, prompt_lengths, max_context, layout,
                                                        min_bucket=min_bucket, pad_id=pad_id)
  rows = tokens.shape[0] * num_samples
  # Each round can fill up to max_new_tokens - 1 decode slots, then one chunk of appended tokens.
  cache_len = tokens.shape[1] + (tools.max_rounds + 1) * max_new_tokens + tools.max_rounds * chunk
  stops = layout.replicated(engine.stop_sequence_array(
      engine.stop_string_sequences(tokenizer, [eval_prompts.BLOCK_CLOSE])))
  eos = layout.replicated(engine.eos_array(eos_id))
  prompt_len = np.repeat(lengths, num_samples)

  completion = [[] for _ in range(rows)]
  mask, lps, lpms = [[] for _ in range(rows)], [[] for _ in range(rows)], [[] for _ in range(rows)]
  reasons = [engine.RUNNING] * rows
  rounds = np.zeros((rows,), np.int32)
  executions = [[] for _ in range(rows)]
  active = np.ones((rows,), bool)
  active[num_prompts * num_samples:] = False  # dummy rows added for an even split over the data axes
  pos0 = prompt_len.copy()
  slot = tokens.shape[1]
  with layout.scope():
    params = engine.sampling_params(cfg, params, unroll_layers)
    cache, logits = engine.prefill(cfg, params, layout.batch(tokens), layout.batch(lengths), cache_len=cache_len,
                                   num_samples=num_samples, layout=layout.key)
    for rnd in range(tools.max_rounds + 1):
      budget = np.array([max_new_tokens - sum(m) for m in mask], np.int32)
      # The cache is sized for every round; this round's decode reads only its first slots (a bound rounded up to
      # 64 keeps the number of compiled variants small).
      bound = min(-(-slot // 64) * 64, cache_len - max_new_tokens)
      windows = engine.decode_windows(bound, max_new_tokens, decode_segments)
      out = engine.decode(cfg, strategy, max_new_tokens, params, cache, logits, layout.batch(pos0), jnp.int32(slot),
                          layout.batch(~active), layout.batch(engine.row_keys(jax.random.fold_in(rng, rnd), rows,
                                                                              row_offset)),
                          stops, eos, jnp.int32(pad_id), layout.batch(np.maximum(budget, 1)), windows=windows,
                          layout=layout.key)
      cache = out.pop("cache")
      host = {k: np.asarray(v) for k, v in out.items()}
      slot += int(host["steps"]) - 1
      resume = []  # (row, appended ids, ExecResult or None)
      for r in np.flatnonzero(active):
        n = int(host["lengths"][r])
        new = host["tokens"][r, :n].tolist()
        reason = int(host["reasons"][r])
        if reason != engine.EOS:  # the fence may be spelled by tokens the in-loop stop sequences do not list
          k = engine.first_stop_prefix(tokenizer, new, [eval_prompts.BLOCK_CLOSE])
          if k is not None and k < n:
            new, n, reason = new[:k], k, engine.STOP
          elif k is not None:
            reason = engine.STOP
        completion[r] += new
        mask[r] += [True] * n
        lps[r] += host["logprobs"][r, :n].tolist()
        lpms[r] += host["model_logprobs"][r, :n].tolist()
        reasons[r] = reason
        if reason == engine.STOP and rnd < tools.max_rounds and sum(mask[r]) < max_new_tokens:
          resume.append(r)
      programs = {r: closed_program(tokenizer.decode(completion[r])) for r in resume}
      to_run = [r for r in resume if programs[r] is not None]
      results = dict(zip(to_run, sandbox.run_programs([programs[r] for r in to_run], timeout_s=tools.timeout_s,
                                                      memory_mb=tools.memory_mb, isolation=tools.isolation,
                                                      python=tools.python)))
      active[:] = False
      if not resume:
        break
      ext = np.full((rows, chunk), pad_id, np.int32)
      ext_len = np.zeros((rows,), np.int32)
      start = np.zeros((rows,), np.int32)
      for r in resume:
        ids = _output_ids(tokenizer, results[r], tools) if r in results else []
        if r in results:
          executions[r].append(results[r])
          rounds[r] += 1
        row_chunk = [completion[r][-1]] + ids  # the pending (never cached) last token, then the output block
        ext[r, :len(row_chunk)] = row_chunk
        ext_len[r] = len(row_chunk)
        start[r] = prompt_len[r] + len(completion[r]) - 1
        completion[r] += ids
        mask[r] += [False] * len(ids)
        lps[r] += [0.0] * len(ids)
        lpms[r] += [0.0] * len(ids)
        pos0[r] = start[r] + len(row_chunk)
        reasons[r] = engine.RUNNING
        active[r] = True
      cache, logits = engine.extend(cfg, params, cache, layout.batch(ext), layout.batch(ext_len),
                                    layout.batch(start), jnp.int32(slot), layout=layout.key)
      slot += chunk

  keep = num_prompts * num_samples
  width = max([len(c) for c in completion[:keep]] + [1])
  arr = lambda seqs, dtype, fill: np.array([s + [fill] * (width - len(s)) for s in seqs[:keep]], dtype)
  final = [engine.LENGTH if c == engine.RUNNING else c for c in reasons[:keep]]
  return ToolOutput(tokens=arr(completion, np.int32, pad_id), model_mask=arr(mask, bool, False),
                    logprobs=arr(lps, np.float32, 0.0), model_logprobs=arr(lpms, np.float32, 0.0),
                    lengths=np.array([len(c) for c in completion[:keep]], np.int32),
                    finish_reasons=tuple(engine.FINISH_REASONS[c] for c in final), rounds=rounds[:keep],
                    executions=tuple(tuple(e) for e in executions[:keep]),
                    texts=tuple(tokenizer.decode(c) for c in completion[:keep]), num_samples=num_samples)
