"""The evaluation driver: prompts -> any text generator -> extraction -> grading -> metrics -> reports.

`generate_fn(prompts: list[str], num_samples: int) -> list[list[str]]` is any generator ([P] prompts ->
[P][num_samples] completions); the JAX sampler plugs in here.
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable, Sequence

import numpy as np

from dsmath.eval import metrics as M
from dsmath.eval.config import EvalConfig
from dsmath.files import write_json_atomic, write_text_atomic
from dsmath.grading import passk
from dsmath.data.benchmarks import BREAKDOWN_KEYS, Record, load_benchmark
from dsmath.grading import (Grader, extract_answer, extract_choice, extract_program_output, normalize_answer)
from dsmath.data.prompts import PROMPT_STYLES, extract_last_program, make_prompt_fn
from dsmath.grading.sandbox import check_sandbox, run_programs

GenerateFn = Callable[[list[str], int], list[list[str]]]


def _extract_all(records: Sequence[Record], outputs: list[list[str]], style: str, sandbox_limits: dict
                 ) -> tuple[list[list[str | None]], list[list[dict | None]], list[list[str | None]]]:
  """Extracted answers [P][n], execution info [P][n] for executed programs, and the texts [P][n] the grader reads.

  Option letters and program outputs are extracted here; a free-text answer is left to the grader (texts[p][s]), which
  extracts it in its time-limited worker by the grading mode's own rules (math-verify's extraction in math_verify mode).
  """
  answers: list[list[str | None]] = [[None] * len(o) for o in outputs]
  exec_info: list[list[dict | None]] = [[None] * len(o) for o in outputs]
  texts: list[list[str | None]] = [[None] * len(o) for o in outputs]
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
      if rec.is_multiple_choice:
        answers[p][s] = ans
      else:
        texts[p][s] = text
  if to_run:
    results = run_programs([c for _, _, c in to_run], **sandbox_limits)
    for (p, s, _), r in zip(to_run, results):
      out = extract_program_output(r.stdout) if r.ok else None
      rec = records[p]
      if out is not None and rec.is_multiple_choice:
        out = extract_choice(out, "ABCDEFGH"[:len(rec.options)])
      answers[p][s] = out
      exec_info[p][s] = {"status": r.status, "message": r.message, "stdout": r.stdout[-2000:],
                         **({"isolation": r.isolation, "warning": r.warning} if r.warning else {})}
  return answers, exec_info, texts


def _grade_all(records: Sequence[Record], answers: list[list[str | None]], texts: list[list[str | None]],
               grader: Grader, mode: str) -> tuple[list[list[bool]], int]:
  """Verdicts [P][n] and the number of answers that hit the grader's time limit. Free-text samples are graded from
  their text and their `answers` entry becomes the grader's extracted answer; program outputs are graded as answers;
  multiple choice compares letter sets."""
  text_idx = [(p, s) for p, row in enumerate(texts) for s, t in enumerate(row) if t is not None]
  ans_idx = [(p, s) for p, row in enumerate(answers) for s, _ in enumerate(row)
             if texts[p][s] is None and not records[p].is_multiple_choice]
  # Both batches are queued before either is awaited, so they share the workers.
  by_text = grader.submit([texts[p][s] for p, s in text_idx], [records[p].answer for p, _ in text_idx], mode)
  by_answer = grader.submit_answers([(answers[p][s], records[p].answer) for p, s in ans_idx], mode)
  correct = [[bool(a is not None and a == rec.answer) for a in row] for rec, row in zip(records, answers)]
  timeouts = 0
  for idx, fut in ((text_idx, by_text), (ans_idx, by_answer)):
    verdicts = fut.result()
    timeouts += verdicts.timeouts
    for (p, s), v, a in zip(idx, verdicts, verdicts.answers):
      correct[p][s] = v
      if texts[p][s] is not None:
        answers[p][s] = a
  return correct, timeouts


def evaluate(records: Sequence[Record], generate_fn: GenerateFn, *, prompt_style: str = EvalConfig.prompt_style,
             k_values: Sequence[int] = EvalConfig.k_values, num_samples: int | None = EvalConfig.num_samples,
             grading_mode: str = EvalConfig.grading_mode, grader: Grader | None = None,
             num_shots: int = EvalConfig.num_shots, seed: int = EvalConfig.seed,
             bootstrap_resamples: int = EvalConfig.bootstrap_resamples, sandbox_limits: dict | None = None,
             data_dir=None) -> dict:
  """Evaluates `generate_fn` on `records` (one benchmark). Returns {"samples": [...], "summary": {...}}.

  Metrics: "accuracy" = accuracy of each problem's first sample (the greedy accuracy when generate_fn decodes
  greedily); "pass@k" (unbiased estimator over all num_samples); "maj@k" (majority over the first k samples with
  answers grouped by grader equivalence, ties to the earliest class); bootstrap 95% CIs over problems; breakdowns
  by subject/level/grade where the benchmark has them. Keyword defaults are the eval stage's (EvalConfig).

  PoT / tool programs run in `dsmath.grading.sandbox`. When the sandbox itself cannot run, SandboxUnavailable
  propagates (checked once before generation, and at every program start): it is never scored as a wrong program.
  """
  if prompt_style not in PROMPT_STYLES:
    raise ValueError(f"eval.prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
  if not records:
    raise ValueError("evaluate() got no records")
  benchmark = records[0].benchmark
  n = num_samples or max(k_values)
  if any(k < 1 or k > n for k in k_values):
    raise ValueError(f"eval.k_values {list(k_values)} must lie in [1, num_samples={n}]")
  prompt_fn = make_prompt_fn(prompt_style, benchmark, num_shots=num_shots, seed=seed, data_dir=data_dir)
  prompts = [prompt_fn(r) for r in records]
  if prompt_style in ("pot", "tool"):  # fail before spending generation on programs that could not run
    check_sandbox(**{k: v for k, v in (sandbox_limits or {}).items() if k in ("isolation", "python")})
  t0 = time.monotonic()
  outputs = generate_fn(prompts, n)
  gen_s = time.monotonic() - t0
  if len(outputs) != len(prompts) or any(len(o) != n for o in outputs):
    raise ValueError(f"generate_fn must return {len(prompts)} lists of {n} strings, got "
                     f"{len(outputs)} lists of sizes {sorted(set(len(o) for o in outputs))}")
  limits = dict(timeout_s=10.0, memory_mb=1024, max_output_bytes=1 << 16)
  limits.update(sandbox_limits or {})
  t0 = time.monotonic()
  answers, exec_info, texts = _extract_all(records, outputs, prompt_style, limits)

  own = grader is None
  grader = grader or Grader(mode=grading_mode)
  try:
    correct, grading_timeouts = _grade_all(records, answers, texts, grader, grading_mode)

    def equal_many(pairs):
      nonlocal grading_timeouts
      verdicts = grader.equal_many(pairs, grading_mode)
      grading_timeouts += verdicts.timeouts
      return verdicts
    classes = passk.group_answers(answers, correct, equal_many, normalize_answer)
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
  """results.json (every sample + summary), summary.md (table) and pass_maj.png (Maj@K/Pass@K vs K) in `out_dir`,
  the first two with the provenance of the numbers (commit, dirty tree, package versions, machine)."""
  from dsmath.runs import provenance, provenance_markdown  # imports JAX: only once there is a report to write
  os.makedirs(out_dir, exist_ok=True)
  s = result["summary"]
  paths = {"json": os.path.join(out_dir, "results.json"), "table": os.path.join(out_dir, "summary.md"),
           "plot": os.path.join(out_dir, "pass_maj.png")}
  write_json_atomic(paths["json"], {**result, "provenance": provenance()})
  ks = sorted(int(k.split("@")[1]) for k in s if k.startswith("pass@") and not k.endswith("ci95"))
  cols = ["benchmark", "prompt_style", "num_problems", "num_samples", "accuracy"] + \
      [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks]
  write_text_atomic(paths["table"], "\n".join([M.summary_table([s], cols), *provenance_markdown()]) + "\n")
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


def run(ec: EvalConfig, generate_fn: GenerateFn, workdir: str) -> dict:
  """Evaluates `generate_fn` on every benchmark of `ec` (the eval stage's resolved `eval` section); writes
  workdir/eval/<benchmark>/ (write_report). Returns {benchmark: summary + the report's files}."""
  summaries = {}
  with Grader(num_workers=ec.grader_workers, mode=ec.grading_mode) as grader:
    for bench in ec.benchmarks:
      options = dict(ec.benchmark_options.get(bench, {}))
      recs = select_records(load_benchmark(bench, **options), ec.num_examples, ec.seed)
      result = evaluate(recs, generate_fn, prompt_style=ec.prompt_style, k_values=ec.k_values,
                        num_samples=ec.num_samples, grading_mode=ec.grading_mode, grader=grader,
                        num_shots=ec.num_shots, seed=ec.seed, bootstrap_resamples=ec.bootstrap_resamples,
                        sandbox_limits=dict(ec.sandbox))
      result["summary"]["chat"] = ec.chat  # the generator wrapped each prompt in the tokenizer's chat template
      paths = write_report(result, os.path.join(workdir, "eval", bench))
      summaries[bench] = {**{k: v for k, v in result["summary"].items() if k != "breakdown"}, "files": paths}
  return summaries
