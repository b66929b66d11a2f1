"""The evaluation driver: prompts -> any text generator -> extraction -> grading -> metrics -> reports.

`generate_fn(prompts: list[str], num_samples: int) -> list[list[str]]` is any generator ([P] prompts ->
[P][num_samples] completions); the JAX sampler plugs in here.
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable, Sequence

import ml_collections
import numpy as np

from dsmath.eval import metrics as M
from dsmath.grading import passk
from dsmath.data.benchmarks import BREAKDOWN_KEYS, Record, load_benchmark
from dsmath.grading.grader import (Grader, extract_answer, extract_choice, extract_program_output, normalize_answer)
from dsmath.data.prompts import PROMPT_STYLES, extract_last_program, make_prompt_fn
from dsmath.grading.sandbox import run_programs

GenerateFn = Callable[[list[str], int], list[list[str]]]


def _extract_all(records: Sequence[Record], outputs: list[list[str]], style: str,
                 sandbox_limits: dict) -> tuple[list[list[str | None]], list[list[dict | None]]]:
  """Extracted answers [P][n] and, for executed programs, execution info [P][n]."""
  answers: list[list[str | None]] = [[None] * len(o) for o in outputs]
  exec_info: list[list[dict | None]] = [[None] * len(o) for o in outputs]
  to_run: list[tuple[int, int, str]] = []
  for p, (rec, outs) in enumerate(zip(records, outputs)):
    for s, text in enumerate(outs):
      prog = extract_last_program(text) if style in ("pot", "tool") else None
      if style == "pot" and prog is not None:
        to_run.append((p, s, prog))
        continue
      ans = extract_choice(text, "ABCDEFGH"[:len(rec.options)]) if rec.is_multiple_choice else extract_answer(text)
      if ans is None and style == "tool" and prog is not None:
        to_run.append((p, s, prog))  # no final answer written: fall back to the last program's output
        continue
      answers[p][s] = ans
  if to_run:
    results = run_programs([c for _, _, c in to_run], **sandbox_limits)
    for (p, s, _), r in zip(to_run, results):
      out = extract_program_output(r.stdout) if r.ok else None
      rec = records[p]
      if out is not None and rec.is_multiple_choice:
        out = extract_choice(out, "ABCDEFGH"[:len(rec.options)])
      answers[p][s] = out
      exec_info[p][s] = {"status": r.status, "message": r.message, "stdout": r.stdout[-2000:]}
  return answers, exec_info


def evaluate(records: Sequence[Record], generate_fn: GenerateFn, *, prompt_style: str = "zero_shot",
             k_values: Sequence[int] = (1,), num_samples: int | None = None, grading_mode: str = "math_verify",
             grader: Grader | None = None, num_shots: int = 4, seed: int = 0, bootstrap_resamples: int = 1000,
             sandbox_limits: dict | None = None, data_dir=None) -> dict:
  """Evaluates `generate_fn` on `records` (one benchmark). Returns {"samples": [...], "summary": {...}}.

  Metrics: "accuracy" = accuracy of each problem's first sample (the greedy accuracy when generate_fn decodes
  greedily); "pass@k" (unbiased estimator over all num_samples); "maj@k" (majority over the first k samples with
  answers grouped by grader equivalence, ties to the earliest class); bootstrap 95% CIs over problems; breakdowns
  by subject/level/grade where the benchmark has them.
  """
  if prompt_style not in PROMPT_STYLES:
    raise ValueError(f"eval.prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
  if not records:
    raise ValueError("evaluate() got no records")
  benchmark = records[0].benchmark
  n = int(num_samples or max(k_values))
  if any(k < 1 or k > n for k in k_values):
    raise ValueError(f"eval.k_values {list(k_values)} must lie in [1, num_samples={n}]")
  prompt_fn = make_prompt_fn(prompt_style, benchmark, num_shots=num_shots, seed=seed, data_dir=data_dir)
  prompts = [prompt_fn(r) for r in records]
  t0 = time.monotonic()
  outputs = generate_fn(prompts, n)
  gen_s = time.monotonic() - t0
  if len(outputs) != len(prompts) or any(len(o) != n for o in outputs):
    raise ValueError(f"generate_fn must return {len(prompts)} lists of {n} strings, got "
                     f"{len(outputs)} lists of sizes {sorted(set(len(o) for o in outputs))}")
  limits = dict(timeout_s=10.0, memory_mb=1024, max_output_bytes=1 << 16)
  limits.update(sandbox_limits or {})
  t0 = time.monotonic()
  answers, exec_info = _extract_all(records, outputs, prompt_style, limits)

  own = grader is None
  grader = grader or Grader(mode=grading_mode)
  try:
    flat = [(a, r.answer) for r, row in zip(records, answers) for a in row]
    mc = [r.is_multiple_choice for r in records for _ in range(n)]
    free = [i for i, m in enumerate(mc) if not m]
    verdict_flat = [bool(a is not None and a == g) for (a, g) in flat]  # multiple choice: letter sets must match
    for i, v in zip(free, grader.equal_many([flat[i] for i in free], grading_mode)):
      verdict_flat[i] = v
    correct = [verdict_flat[p * n:(p + 1) * n] for p in range(len(records))]
    classes = passk.group_answers(answers, correct, lambda pairs: grader.equal_many(pairs, grading_mode), normalize_answer)
    grading_timeouts = grader.timeouts
  finally:
    if own:
      grader.close()
  grade_s = time.monotonic() - t0

  num_correct = np.array([sum(c) for c in correct])
  first = np.array([float(c[0]) for c in correct])
  summary: dict = {"benchmark": benchmark, "prompt_style": prompt_style, "grading_mode": grading_mode,
                   "num_problems": len(records), "num_samples": n, "accuracy": float(first.mean()),
                   "accuracy_ci95": M.bootstrap_ci(first, num_resamples=bootstrap_resamples, seed=seed),
                   "generation_s": gen_s, "grading_s": grade_s, "grading_timeouts": grading_timeouts,
                   "no_answer_rate": float(np.mean([a is None for row in answers for a in row]))}
  per_problem: dict[str, np.ndarray] = {"accuracy": first}
  for k in sorted(set(k_values)):
    pk = passk.pass_at_k(np.full(len(records), n), num_correct, k)
    mk = passk.maj_at_k(classes, correct, k)
    per_problem[f"pass@{k}"], per_problem[f"maj@{k}"] = pk, mk
    for name, v in ((f"pass@{k}", pk), (f"maj@{k}", mk)):
      summary[name] = float(v.mean())
      summary[f"{name}_ci95"] = M.bootstrap_ci(v, num_resamples=bootstrap_resamples, seed=seed)
  summary["breakdown"] = {
      key: {name: M.breakdown(v, [r.metadata.get(key) for r in records]) for name, v in per_problem.items()}
      for key in BREAKDOWN_KEYS.get(benchmark, ()) if all(key in r.metadata for r in records)}

  samples = []
  for p, rec in enumerate(records):
    samples.append({
        "id": rec.id, "prompt": prompts[p], "gold": rec.answer,
        "metadata": {k: v for k, v in rec.metadata.items() if k != "solution"},
        "samples": [{"output": outputs[p][s], "answer": answers[p][s], "correct": correct[p][s],
                     "class": classes[p][s], **({"execution": exec_info[p][s]} if exec_info[p][s] else {})}
                    for s in range(n)],
        "pass": {f"pass@{k}": float(per_problem[f"pass@{k}"][p]) for k in k_values},
        "maj": {f"maj@{k}": float(per_problem[f"maj@{k}"][p]) for k in k_values},
    })
  return {"summary": summary, "samples": samples}


def write_report(result: dict, out_dir: str, *, plot_name: str | None = None) -> dict[str, str]:
  """results.json (every sample + summary), summary.md (table) and pass_maj.png (Maj@K/Pass@K vs K) in `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  s = result["summary"]
  paths = {"json": os.path.join(out_dir, "results.json"), "table": os.path.join(out_dir, "summary.md"),
           "plot": os.path.join(out_dir, "pass_maj.png")}
  M.write_json_atomic(paths["json"], result)
  ks = sorted(int(k.split("@")[1]) for k in s if k.startswith("pass@") and not k.endswith("ci95"))
  cols = ["benchmark", "prompt_style", "num_problems", "num_samples", "accuracy"] + \
      [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks]
  table = M.summary_table([s], cols)
  tmp = paths["table"] + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(table + "\n")
  os.replace(tmp, paths["table"])
  M.plot_pass_maj({plot_name or s["benchmark"]: {"pass": {k: s[f"pass@{k}"] for k in ks},
                                                 "maj": {k: s[f"maj@{k}"] for k in ks}}},
                  paths["plot"], title=s["benchmark"])
  return paths


def select_records(records: Sequence[Record], num_examples: int | None, seed: int) -> list[Record]:
  """A deterministic subset (seeded sample, original order kept); all records when num_examples is falsy or large."""
  if not num_examples or num_examples >= len(records):
    return list(records)
  idx = sorted(random.Random(seed).sample(range(len(records)), num_examples))
  return [records[i] for i in idx]


def run(config: ml_collections.ConfigDict, workdir: str,
        generate_fn_factory: Callable[[ml_collections.ConfigDict], GenerateFn]) -> dict:
  """Stage entry point: evaluates every benchmark in `config.eval.benchmarks`; writes workdir/eval/<benchmark>/.

  Reads config.eval.{benchmarks, num_examples, prompt_style, k_values, num_samples (default max k), grading_mode
  ("math_verify"), num_shots (4), seed (0), bootstrap_resamples (1000), grader_workers (2), sandbox (dict of
  run_program limits), benchmark_options ({benchmark: loader keyword arguments}, e.g. the synthetic difficulty)}. `generate_fn_factory(config)` builds the generator once (e.g. from the checkpoint).
  """
  if "eval" not in config:
    raise KeyError("config.eval is missing (needs eval.benchmarks, eval.prompt_style, eval.k_values)")
  ec = config.eval
  for key in ("benchmarks", "prompt_style", "k_values"):
    if key not in ec:
      raise KeyError(f"config.eval.{key} is missing")
  get = lambda k, d: ec[k] if k in ec and ec[k] is not None else d  # noqa: E731
  k_values = [int(k) for k in ec.k_values]
  generate_fn = generate_fn_factory(config)
  summaries = {}
  with Grader(num_workers=int(get("grader_workers", 2)), mode=get("grading_mode", "math_verify")) as grader:
    for bench in ec.benchmarks:
      options = dict(get("benchmark_options", {}).get(bench, {}))
      recs = select_records(load_benchmark(bench, **options), get("num_examples", None), int(get("seed", 0)))
      result = evaluate(recs, generate_fn, prompt_style=ec.prompt_style, k_values=k_values,
                        num_samples=get("num_samples", None), grading_mode=get("grading_mode", "math_verify"),
                        grader=grader, num_shots=int(get("num_shots", 4)), seed=int(get("seed", 0)),
                        bootstrap_resamples=int(get("bootstrap_resamples", 1000)),
                        sandbox_limits=dict(get("sandbox", {})))
      paths = write_report(result, os.path.join(workdir, "eval", bench))
      summaries[bench] = {**{k: v for k, v in result["summary"].items() if k != "breakdown"}, "files": paths}
  M.write_json_atomic(os.path.join(workdir, "eval", "summary.json"), summaries)
  return summaries
