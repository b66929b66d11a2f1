"""Table 6 at toy scale: code-first vs general-first two-stage training (+ the one-stage math-only row), 3 seeds.

  python -m experiments.sweep --config configs/sweep_table6.py
Results: runs/sweep_table6/results.{md,json} and *.png, copied to results/table6/ with the command. Resumable.
Each cell: stage1 (code or web text; none for math_only) -> math (MATH + GSM8K train, init_from stage1) -> eval
(held-out loss on MATH test, GSM8K test and synthetic test texts). One tokenizer for all cells (setup job): stage 1
names it, the math stage and the eval take it (and the model config) from the run they start from (run.json); the
math-only arm's math stage, which starts from nothing, names it.
"""
from dsmath.config import config_dict
from dsmath.sweep import SweepConfig

SEEDS = (0, 1, 2)
T6 = "configs/table6_code_first.py"


def get_config():
  c = config_dict(SweepConfig)
  c.name = "Table 6 (toy): code vs general stage 1, then math"
  c.sweep_dir = "runs/sweep_table6"
  c.results_dir = "results/table6"
  c.parallel = 2
  c.stage_timeout_s = 1200
  c.setup = [{"name": "data", "config": "configs/table6_data.py"}]
  tok = "{data}/tokenizer/spm.model"
  c.stages = [
      {"name": "stage1", "config": T6 + ":stage1",
       "overrides": {"data.tokenizer.path": tok, "data.sources.stage1.path": "{data}/code.jsonl"}},
      {"name": "math", "config": T6 + ":math", "overrides": {"init_from": "{stage1}"}},
      {"name": "eval", "config": T6 + ":eval", "overrides": {"init_from": "{math}"}},
  ]
  c.axes = [
      {"name": "arm", "levels": [
          {"name": "code_first", "set": {}},
          {"name": "general_first", "set": {"stage1:config": "configs/table6_general_first.py:stage1",
                                            "stage1/data.sources.stage1.path": "shared:web/dclm_*_data.jsonl"}},
          {"name": "math_only", "set": {"stage1:enabled": False, "math/init_from": "",
                                        "math/data.tokenizer.path": tok}},
      ]},
      {"name": "seed", "values": list(SEEDS),
       "keys": ["stage1/seed", "stage1/data.seed", "math/seed", "math/data.seed"]},
  ]
  c.aggregate = {
      "group_by": ["arm"],
      "metrics": [
          {"name": "MATH test bits/char", "stage": "eval", "path": "sets.math_test.bits_per_char",
           "lower_is_better": True},
          {"name": "GSM8K test bits/char", "stage": "eval", "path": "sets.gsm8k_test.bits_per_char",
           "lower_is_better": True},
          {"name": "synthetic test bits/char", "stage": "eval", "path": "sets.synthetic_test.bits_per_char",
           "lower_is_better": True},
          {"name": "final math-stage train loss", "stage": "math", "path": "final_loss", "lower_is_better": True},
      ],
      "curves": [
          {"name": "math_stage_train_loss", "stage": "math", "file": "metrics.jsonl", "key": "loss",
           "title": "Math stage training loss (nats/token), mean over seeds"},
          {"name": "stage1_train_loss", "stage": "stage1", "file": "metrics.jsonl", "key": "loss",
           "title": "Stage 1 training loss (code vs web text)"},
      ],
  }
  return c
