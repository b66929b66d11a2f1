"""Evaluation: benchmarks, prompts, answer extraction and grading, Pass@k/Maj@k metrics, a program sandbox."""
from dsmath.data.benchmarks import LOADERS, Record, load_benchmark
from dsmath.eval.evaluate import evaluate, run, select_records, write_report
from dsmath.grading.grader import (GRADERS, Grader, extract_answer, extract_choice, extract_last_boxed,
                                 extract_program_output, grade, grade_answers)
from dsmath.eval.metrics import bootstrap_ci
from dsmath.grading.passk import maj_at_k, pass_at_k
from dsmath.data.prompts import (BLOCK_CLOSE, INSTRUCT_SUFFIX_EN, INSTRUCT_SUFFIX_ZH, OUTPUT_OPEN, PYTHON_OPEN,
                                 extract_last_program, format_output_block, make_prompt_fn)
from dsmath.grading.sandbox import ExecResult, run_program, run_programs

__all__ = [
    "LOADERS", "Record", "load_benchmark", "evaluate", "run", "select_records", "write_report", "GRADERS", "Grader",
    "extract_answer", "extract_choice", "extract_last_boxed", "extract_program_output", "grade", "grade_answers",
    "bootstrap_ci", "maj_at_k", "pass_at_k", "BLOCK_CLOSE", "INSTRUCT_SUFFIX_EN", "INSTRUCT_SUFFIX_ZH", "OUTPUT_OPEN",
    "PYTHON_OPEN", "extract_last_program", "format_output_block", "make_prompt_fn", "ExecResult", "run_program",
    "run_programs",
]
