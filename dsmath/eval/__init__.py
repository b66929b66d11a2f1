"""Evaluation: the driver (prompts -> any generator -> grading -> Pass@k / Maj@k -> reports) and the `eval` stage.

Benchmark loaders and prompt formats live in dsmath.data (`benchmarks`, `prompts`); answer extraction, grading, the
program sandbox and Pass@k / Maj@k in dsmath.grading, the library every stage grades with.
"""
from dsmath.eval.evaluate import evaluate, run, select_records, write_report
from dsmath.eval.metrics import bootstrap_ci, breakdown

__all__ = ["evaluate", "run", "select_records", "write_report", "bootstrap_ci", "breakdown"]
