"""The whole DeepSeekMath recipe at toy scale on a 2-core CPU (README's first command; the default config):

  corpus mining on the toy crawl -> generated sources (synthetic task, stdlib code, an SFT set written by a careless
  teacher) -> tokenizer + continued pre-training on the Grain mixture -> SFT (the train job) -> GRPO -> held-out
  evaluation after each stage, Pass@K / Maj@K of the SFT and GRPO models -> runs/toy/report.md

  python -m experiments.run --config configs/toy.py            # re-running skips finished stages, resumes the rest

Every stage is an ordinary job config below; "{run}" stands for the run directory. A stage that starts from another
(init_from, an evaluation's checkpoint) takes the model config and the tokenizer from that run's run.json; only
pre-training names the model. The held-out task is the synthetic arithmetic test split (disjoint from train and
from the validation split settings were chosen on, by construction; never trained on).

Why RL has something to do here: pre-training sees right solutions of the synthetic task, but the SFT set is written
by a teacher who slips on carries and borrows (dsmath.data.synthetic.Teacher), so the SFT model imitates the slips
on questions it could compute; GRPO on the rule reward removes them (EXPERIMENTS.md, "RL that learns").
"""
import importlib

import ml_collections

from configs import corpus_toy, grpo_toy, pretrain_toy, sft_stage_toy
from dsmath.config import config_dict
from dsmath.data import materialize
from dsmath.eval.checkpoint_eval import default_config as eval_stage_config
from dsmath.recipe import RecipeConfig


def _task():
  """The synthetic task's shape, shared by the sources, the RL stages and the evaluations."""
  g = grpo_toy.get_config().task.synthetic
  return g.difficulty.to_dict(), g.test_fraction


# The synthetic task of every stage: 1-2 additions/subtractions of numbers up to 9, test 20% and validation 10% of the
# question hash range (dsmath.data.synthetic.split_of); settings were chosen on validation, numbers reported on test.
VALIDATION_FRACTION = 0.1
# The SFT teacher drops a due carry / borrow 80% of the time. At 0.9 some trajectories' SFT models all but forgot the
# right carry and GRPO stalled on them (EXPERIMENTS.md, "Why some trajectories stall"); at 0.8 every one measured gains.
TEACHER_SLIP = 0.8
# 4 layers of 128, 2.2M parameters. (Chosen when the tiny preset looked too small; with this recipe's pre-training and
# 1200 SFT steps the tiny preset computes the task as well: EXPERIMENTS.md, "RL that learns: diagnosis".)
MODEL = {"preset": "tiny", "hidden_size": 128, "intermediate_size": 344, "num_layers": 4, "num_heads": 4,
         "num_kv_heads": 2}


def rl_stage(parent: str, method_config: str = "grpo_toy") -> ml_collections.ConfigDict:
  """configs/<method_config>.py (an RL method on the toy task) with the recipe's RL settings, starting from the run
  `parent`: its model config and tokenizer are that run's. The sweeps of Figures 5 and 6 use it for every arm. A
  method config may name settings of its own that the recipe's RL stage keeps for it (`RECIPE_RL`, dotted keys: the
  learned reward models' settings were chosen apart, EXPERIMENTS.md)."""
  module = importlib.import_module(f"configs.{method_config}")
  c = module.get_config()
  c.init_from = parent
  c.rl.sft_warmup_steps = 0
  c.task.synthetic.validation_fraction = VALIDATION_FRACTION
  # chosen on the validation split (EXPERIMENTS.md): 200 steps at lr 3e-4 of 8 questions x G 8
  c.rl.steps = 200
  c.optimizer.peak_lr = 3e-4
  c.task.synthetic.num_test = 200
  c.eval.num_questions = 200  # held-out (test split): greedy, and 4 samples a question at the paper's T = 0.7
  c.eval.samples = 4
  c.eval.every = 25
  c.checkpoint.every = 50
  for key, value in getattr(module, "RECIPE_RL", {}).items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def _sft(parent: str) -> ml_collections.ConfigDict:
  """The recipe's SFT: the train job (packing, exact resume) on the teacher's SFT set, loss on the solutions."""
  c = sft_stage_toy.get_config()
  c.workdir = ""
  c.init_from = parent
  c.data.sources = {"synthetic_sft": {"path": "{run}/sources/synthetic_sft.jsonl", "formatter": "synthetic"}}
  c.data.sft_template = "plain"  # question + newline: the prompt the RL stage and evaluation use
  c.data.seq_len = 128
  c.data.batch_size = 16
  c.optimizer.peak_lr = 3e-3
  c.train.total_steps = 1200
  c.train.checkpoint_every = 400
  return c


def eval_config(checkpoint: str, *, num_examples: int, strategy: dict, k_values: list, seed: int = 0,
                split: str = "test", num_samples: int = 0):
  """An eval stage on the recipe's synthetic task: the test split (reported numbers) or validation (choosing
  settings)."""
  difficulty, test_fraction = _task()
  c = eval_stage_config()
  c.checkpoint = checkpoint
  c.sampling.strategy = strategy
  c.sampling.max_new_tokens = 48
  c.sampling.seed = seed
  c.eval.benchmarks = ("synthetic",)
  c.eval.num_examples = num_examples
  c.eval.prompt_style = "plain"
  c.eval.k_values = tuple(k_values)
  c.eval.bootstrap_resamples = 500
  c.eval.num_samples = num_samples
  c.eval.benchmark_options = {"synthetic": {"num_examples": num_examples, "seed": 0, "test_fraction": test_fraction,
                                            "validation_fraction": VALIDATION_FRACTION, "split": split,
                                            **difficulty}}
  return c


BASE_STAGES = ("corpus", "sources", "pretrain", "sft")


def get_config(kind: str = "") -> ml_collections.ConfigDict:
  """The recipe ("" or "full"); "base": its first stages only, up to the SFT model (the sweeps' setup); "rl:<config>":
  the recipe's RL stage for configs/<config>.py alone (a sweep cell; init_from set by the sweep); "validation:greedy"
  / "validation:sampled": held-out accuracy on the validation split (greedy; 4 samples at T = 0.7), the measures
  settings were chosen by (checkpoint set by the sweep)."""
  if kind.startswith("rl:"):
    return rl_stage("", kind[3:])
  if kind == "validation:greedy":
    return eval_config("", num_examples=200, strategy={"name": "greedy"}, k_values=[1], split="validation")
  if kind == "validation:sampled":
    return eval_config("", num_examples=200, strategy={"name": "temperature", "temperature": 0.7}, k_values=[1],
                       split="validation", num_samples=4)
  if kind not in ("", "full", "base"):
    raise ValueError(f"configs/toy.py takes '', 'full', 'base' or 'rl:<config>', got {kind!r}")
  difficulty, test_fraction = _task()
  c = config_dict(RecipeConfig)
  c.workdir = "runs/toy"
  s = ml_collections.ConfigDict()

  s.corpus = corpus_toy.get_config()

  s.sources = materialize.default_config()
  s.sources.synthetic.num_train = 2000
  s.sources.synthetic.num_sft = 2000
  s.sources.synthetic.teacher.slip = TEACHER_SLIP
  s.sources.synthetic.test_fraction = test_fraction
  s.sources.synthetic.validation_fraction = VALIDATION_FRACTION
  s.sources.synthetic.difficulty = difficulty
  s.sources.code.max_chars = 500_000

  pre = pretrain_toy.get_config()
  pre.model = MODEL
  pre.data.sources = {
      "math_corpus": {"path": "{run}/corpus/corpus/corpus-*.jsonl", "text_field": "text", "weight": 0.5},
      "synthetic": {"path": "{run}/sources/synthetic_train.jsonl", "text_field": "text", "weight": 0.3},
      "code": {"path": "{run}/sources/code.jsonl", "text_field": "text", "weight": 0.1},
      "natural_language": {"path": "toy:web/dclm_*_data.jsonl", "text_field": "text", "weight": 0.1},
  }
  pre.train.total_steps = 200
  s.pretrain = pre

  s.sft = _sft("{run}/pretrain")

  s.grpo = rl_stage("{run}/sft")

  greedy = {"name": "greedy"}
  for stage in ("pretrain", "sft", "grpo"):
    s[f"eval_{stage}"] = eval_config("{run}/" + stage, num_examples=100, strategy=greedy, k_values=[1])
  sampled = {"name": "temperature", "temperature": 0.7}  # the paper's Figure 7 setting
  for stage in ("sft", "grpo"):
    s[f"passk_{stage}"] = eval_config("{run}/" + stage, num_examples=50, strategy=sampled, k_values=[1, 2, 4, 8, 16],
                                      seed=1)

  c.stages = s
  c.stage_order = ["corpus", "sources", "pretrain", "sft", "grpo", "eval_pretrain", "eval_sft", "eval_grpo",
                   "passk_sft", "passk_grpo"]
  if kind == "base":
    c.stage_order = list(BASE_STAGES)
  c.report = {"accuracy": [["pre-training", "eval_pretrain"], ["SFT", "eval_sft"], ["GRPO", "eval_grpo"]],
              "pass_maj": [["SFT", "passk_sft"], ["GRPO", "passk_grpo"]]}
  return c
