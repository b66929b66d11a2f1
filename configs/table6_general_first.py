"""Table 6 at toy scale, "Stage 1: General Training" arm: identical to configs/table6_code_first.py except the
stage-1 text: real Common Crawl pages (the shared data's web/dclm_*_data.jsonl, 780 pages, 2.15M characters).

Why this general text and nothing else: it is the only natural-language, non-code, non-math text shipped with the
project's data, and at toy scale it already exceeds what stage 1 reads (80 steps x 8 x 256 tokens, about 0.16M
tokens), so no second source is needed to fill the budget; the code arm reads a stdlib selection of the same
character size (configs/table6_data.py). Candidate extras were rejected: site-packages license files are a few dozen
near-duplicate legal texts, and package READMEs / docstrings are largely code.

  python -m experiments.run --config configs/table6_general_first.py:stage1 --workdir runs/table6/general_first/stage1
  (then :math with --config.init_from=<stage1 dir>, and :eval through python -m experiments.run; see code_first)
"""
from configs import table6_code_first as base


def stage1_sources() -> dict:
  return {"stage1": {"path": "shared:web/dclm_*_data.jsonl", "text_field": "text"}}


def get_config(arg: str = "stage1"):
  return base.get_config(arg, stage1=stage1_sources)
