"""The grading library under every stage: answer extraction and equivalence (math-verify and the paper's rules), a
worker pool with per-answer time limits, the program sandbox, and Pass@k / Maj@k. Imports nothing else of dsmath."""
