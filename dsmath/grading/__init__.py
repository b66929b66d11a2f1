"""The grading library under every stage: answer extraction (`answers`), equivalence in two modes, math-verify's and
the paper's (`equivalence`), a worker pool with a hard per-answer time limit (`pool`), the program sandbox
(`sandbox`) and Pass@k / Maj@k (`passk`). Imports nothing else of dsmath."""
from dsmath.grading.answers import (boxed_integer_fast_path, extract_answer, extract_choice, extract_gsm8k_gold,
                                    extract_last_boxed, extract_program_output, normalize_answer)
from dsmath.grading.equivalence import (MODES, answers_equal_inprocess, gold_extraction, grade_text_inprocess,
                                        pred_extraction, wrap_gold)
from dsmath.grading.pool import Grader, Verdicts, default_grader, grade, grade_answers

__all__ = ["MODES", "Grader", "Verdicts", "answers_equal_inprocess", "boxed_integer_fast_path", "default_grader",
           "extract_answer", "extract_choice", "extract_gsm8k_gold", "extract_last_boxed", "extract_program_output",
           "gold_extraction", "grade", "grade_answers", "grade_text_inprocess", "normalize_answer", "pred_extraction",
           "wrap_gold"]
