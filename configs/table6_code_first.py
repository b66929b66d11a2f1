"""Table 6 at toy scale, "Stage 1: Code Training" arm: stage 1 on code, then the math stage, then held-out loss.

Three jobs, chosen by the config argument (big_vision style `file.py:arg`):
  python -m experiments.run --config configs/table6_data.py --workdir runs/table6/data      # code corpus + tokenizer
  python -m experiments.run --config configs/table6_code_first.py:stage1 --workdir runs/table6/code_first/stage1
  python -m experiments.run --config configs/table6_code_first.py:math \
      --config.init_from=runs/table6/code_first/stage1 --workdir runs/table6/code_first/math
  python -m experiments.run --config configs/table6_code_first.py:eval \
      --config.init_from=runs/table6/code_first/math --workdir runs/table6/code_first/eval
configs/sweep_table6.py runs all of it over seeds (and the general-first and math-only arms).

Paper (Table 6): 400B tokens of code (or general text) then 150B math tokens on a 1.3B model. Toy: the tiny model,
STAGE1_STEPS x 8 x 256 tokens of stage-1 text, then MATH_STEPS x 8 x 256 tokens of math (MATH + GSM8K train
solutions), with one shared tokenizer (configs/table6_data.py). Held-out: loss on MATH test and GSM8K test worked
solutions and on the synthetic task's test split; no test text is ever trained on.

Stage 1 names the shared tokenizer (data.tokenizer.path); the math stage with init_from and the eval take the model
config and the tokenizer from the run they start from (its run.json). The math-only arm's math stage starts from
nothing, so it names the tokenizer itself (`--config.data.tokenizer.path=...`).
"""
import ml_collections

from dsmath.sweep.heldout import default_config as heldout_config
from dsmath.train.config import default_config

DATA_DIR = "runs/table6/data"  # the table6_data job's run directory (the sweep points these at its own)
TOKENIZER = f"{DATA_DIR}/tokenizer/spm.model"
STAGE1_STEPS = 80
MATH_STEPS = 80
SEQ_LEN = 256
BATCH = 8


def stage1_sources() -> dict:
  # The Python standard library's .py files (dsmath.data.code_text), written by configs/table6_data.py.
  return {"stage1": {"path": f"{DATA_DIR}/code.jsonl", "text_field": "text"}}


def math_sources() -> dict:
  return {"math": {"path": "shared:math/train.jsonl", "formatter": "math", "weight": 0.5},
          "gsm8k": {"path": "shared:gsm8k/train.jsonl", "formatter": "gsm8k", "weight": 0.5}}


def _train(sources: dict, steps: int, tokenizer: str = "") -> ml_collections.ConfigDict:
  c = default_config("pretrain")
  c.seed = 0  # the model: the tiny preset (float32), the schema's default
  c.data.sources = sources
  c.data.seq_len, c.data.batch_size, c.data.seed = SEQ_LEN, BATCH, 0
  c.data.tokenizer.path = tokenizer
  c.optimizer.peak_lr = 3e-3
  c.optimizer.warmup_steps = 10
  c.train.total_steps = steps
  c.train.checkpoint_every = steps
  c.train.keep_checkpoints = 1
  c.train.log_every = 5
  c.train.progress = False  # logs go to files in a sweep
  return c


def eval_config() -> ml_collections.ConfigDict:
  c = heldout_config()
  c.init_from = ""  # the math stage's run (its run.json gives the model config and the tokenizer)
  c.seq_len = 512
  c.batch_size = 32
  c.sets = ml_collections.ConfigDict({
      "math_test": {"kind": "file", "path": "shared:math/test.jsonl", "formatter": "math", "max_docs": 400},
      "gsm8k_test": {"kind": "file", "path": "shared:gsm8k/test.jsonl", "formatter": "gsm8k", "max_docs": 400},
      "synthetic_test": {"kind": "synthetic", "max_docs": 200},
  })
  return c


def get_config(arg: str = "stage1", stage1=stage1_sources) -> ml_collections.ConfigDict:
  if arg == "stage1":
    return _train(stage1(), STAGE1_STEPS, TOKENIZER)
  if arg == "math":
    return _train(math_sources(), MATH_STEPS)  # init_from: the stage-1 run, given on the command line
  if arg == "eval":
    return eval_config()
  raise ValueError(f"configs/table6_*.py: argument must be stage1, math or eval, got {arg!r}")
