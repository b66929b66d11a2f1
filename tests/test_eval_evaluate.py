"""End-to-end evaluation with real deterministic generators (gold solutions, shuffled ones, PoT programs)."""
import json
import random

import pytest

from dsmath.config import resolve
from dsmath.data.benchmarks import load_benchmark
from dsmath.data.prompts import make_prompt_fn
from dsmath.eval import evaluate, run, select_records, write_report
from dsmath.eval.config import EvalConfig
from dsmath.data.prompts import INSTRUCT_SUFFIX_EN, INSTRUCT_SUFFIX_ZH, PYTHON_OPEN, BLOCK_CLOSE


def _gold_or_wrong(records, p_gold=0.5, seed=0):
  sol = {r.question: r.metadata.get("solution") or f"The answer is {r.answer}." for r in records}
  qs = [r.question for r in records]

  def gen(prompts, n):
    out = []
    for i, p in enumerate(prompts):
      rng = random.Random(seed * 1000 + i)
      q = next(q for q in qs if q.strip() in p)
      wrong = sol[qs[(qs.index(q) + 1) % len(qs)]]
      out.append([sol[q] if rng.random() < p_gold else wrong for _ in range(n)])
    return out
  return gen


def test_gold_generator_scores_100_and_shuffled_scores_low():
  recs = select_records(load_benchmark("math500"), 24, 0)
  res = evaluate(recs, _gold_or_wrong(recs, 1.0), k_values=[1, 4])
  s = res["summary"]
  assert s["accuracy"] == 1.0 and s["pass@4"] == 1.0 and s["maj@4"] == 1.0
  res = evaluate(recs, _gold_or_wrong(recs, 0.0), k_values=[1])
  assert res["summary"]["accuracy"] == 0.0


def test_mixed_generator_metrics_consistent(tmp_path):
  recs = select_records(load_benchmark("math500"), 12, 1)
  res = evaluate(recs, _gold_or_wrong(recs, 0.5, seed=3), k_values=[1, 2, 4, 8], bootstrap_resamples=200)
  s = res["summary"]
  assert s["pass@1"] <= s["pass@2"] <= s["pass@4"] <= s["pass@8"]
  for smp in res["samples"]:
    c = [x["correct"] for x in smp["samples"]]
    assert smp["pass"]["pass@8"] == float(any(c))
    # two classes per problem (gold / neighbour's answer): maj@8 is right iff gold wins or ties first
    n_ok = sum(c)
    if n_ok != 4:
      assert smp["maj"]["maj@8"] == float(n_ok > 4)
  assert set(s["breakdown"]) == {"subject", "level"}
  paths = write_report(res, str(tmp_path / "out"))
  data = json.loads(open(paths["json"]).read())
  assert len(data["samples"]) == 12 and "prompt" in data["samples"][0]
  assert open(paths["table"]).read().startswith("| benchmark")


def test_pot_programs_run_in_sandbox():
  recs = select_records(load_benchmark("gsm8k"), 3, 0)
  gold = {r.question: r.answer.replace(",", "") for r in recs}

  def gen(prompts, n):
    out = []
    for p in prompts:
      q = next(q for q in gold if q.strip() in p)
      good = f"Let me compute.\n{PYTHON_OPEN}x = {gold[q]}\nprint(x)\n{BLOCK_CLOSE}"
      hostile = f"{PYTHON_OPEN}while True:\n  pass\n{BLOCK_CLOSE}"
      out.append([good, hostile])
    return out

  res = evaluate(recs, gen, prompt_style="pot", k_values=[1, 2], sandbox_limits={"timeout_s": 20.0, "cpu_s": 1})
  assert res["summary"]["accuracy"] == 1.0
  ex = res["samples"][0]["samples"][1]["execution"]
  assert ex["status"] == "timeout" and res["samples"][0]["samples"][1]["answer"] is None


def test_multiple_choice_and_chinese_prompts():
  recs = load_benchmark("sat")[:8]
  res = evaluate(recs, lambda ps, n: [[f"The answer is ({r.answer})."] * n for r in recs], k_values=[1])
  assert res["summary"]["accuracy"] == 1.0
  cm = load_benchmark("cmath")[0]
  assert make_prompt_fn("zero_shot", "cmath")(cm).endswith(INSTRUCT_SUFFIX_ZH)
  assert make_prompt_fn("zero_shot", "math")(recs[0]).endswith(INSTRUCT_SUFFIX_EN)


def test_few_shot_exemplars_come_from_train_only():
  test_q = {r.question.strip() for r in load_benchmark("math")} | {r.question.strip() for r in load_benchmark("gsm8k")}
  for bench in ("math", "gsm8k"):
    rec = load_benchmark(bench)[0]
    prompt = make_prompt_fn("few_shot", bench, num_shots=4)(rec)
    shots = prompt.split("\n\n\n")[:-1]
    assert len(shots) == 4
    for s in shots:
      q = s.split("\nAnswer:")[0].removeprefix("Question: ").strip()
      assert q not in test_q


def test_run_stage(tmp_path):
  ec = resolve(EvalConfig, {"benchmarks": ["gsm8k", "mmlu_stem"], "num_examples": 5, "prompt_style": "zero_shot",
                            "k_values": [1, 2], "num_samples": 2, "bootstrap_resamples": 100}, "config.eval")
  recs = {r.question.strip(): r for b in ec.benchmarks for r in load_benchmark(b)}

  def gen(prompts, n):
    out = []
    for p in prompts:
      r = next(r for q, r in recs.items() if p.startswith(q))
      out.append([f"The answer is {r.answer}.", "The answer is 123456789."])
    return out

  summary = run(ec, gen, str(tmp_path))
  assert summary["gsm8k"]["accuracy"] == 1.0 and summary["gsm8k"]["pass@2"] == 1.0
  assert summary["mmlu_stem"]["accuracy"] == 1.0
  assert (tmp_path / "eval" / "gsm8k" / "pass_maj.png").exists()
  results = json.loads((tmp_path / "eval" / "gsm8k" / "results.json").read_text())
  assert results["summary"]["num_problems"] == 5 and results["provenance"]["commit"]
  assert "## Provenance" in (tmp_path / "eval" / "gsm8k" / "summary.md").read_text()
  with pytest.raises(ValueError, match=r"config.eval: k_values \[1, 4\] must be non-empty and lie in \[1, "
                                       r"num_samples=2\]"):
    resolve(EvalConfig, {"k_values": [1, 4], "num_samples": 2}, "config.eval")
