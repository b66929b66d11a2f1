"""The grading API in one namespace (kept for callers of the old module): extraction from `answers`, the two modes
from `equivalence`, the time-limited worker pool from `pool`. New code may import `dsmath.grading` directly."""
from dsmath.grading.answers import (boxed_integer_fast_path, extract_answer, extract_choice, extract_gsm8k_gold,
                                    extract_last_boxed, extract_program_output, normalize_answer)
from dsmath.grading.equivalence import (MODES, answers_equal_inprocess, grade_text_inprocess, mv_answers_equal,
                                        paper_answers_equal)
from dsmath.grading.pool import Grader, Verdicts, default_grader, grade, grade_answers

# Registry of grading modes: name -> equivalence of two extracted answers (in process, no hard time limit).
GRADERS = {"math_verify": mv_answers_equal, "paper": paper_answers_equal}

__all__ = ["GRADERS", "MODES", "Grader", "Verdicts", "answers_equal_inprocess", "boxed_integer_fast_path",
           "default_grader", "extract_answer", "extract_choice", "extract_gsm8k_gold", "extract_last_boxed",
           "extract_program_output", "grade", "grade_answers", "grade_text_inprocess", "normalize_answer"]
