"""The whole DeepSeekMath recipe at toy scale on a 2-core CPU (README's first command; the default config):

  corpus mining on the toy crawl -> generated sources (synthetic task, stdlib code) -> tokenizer + continued
  pre-training on the Grain mixture -> SFT -> GRPO -> held-out evaluation after each stage, Pass@K / Maj@K of the
  SFT and GRPO models -> runs/toy/report.md

  python -m experiments.run --config configs/toy.py            # re-running skips finished stages, resumes the rest

Every stage is an ordinary job config below; "{run}" stands for the run directory. A stage that starts from another
(init_from, an evaluation's checkpoint) takes the model config and the tokenizer from that run's run.json; only
pre-training names the model. The held-out task is the synthetic arithmetic test split (disjoint from train by
construction; never trained on).
"""
import ml_collections

from configs import corpus_toy, grpo_toy, pretrain_toy
from dsmath.config import config_dict
from dsmath.data import materialize
from dsmath.eval.checkpoint_eval import default_config as eval_config
from dsmath.recipe import RecipeConfig


def _task():
  """The synthetic task's shape, shared by the sources, the RL stages and the evaluations."""
  g = grpo_toy.get_config().task.synthetic
  return g.difficulty.to_dict(), g.test_fraction


def _rl_from(parent: str) -> ml_collections.ConfigDict:
  """configs/grpo_toy.py starting from the run `parent`: its model config and tokenizer are that run's."""
  c = grpo_toy.get_config()
  c.init_from = parent
  c.rl.sft_warmup_steps = 0
  return c


def _eval(checkpoint: str, *, num_examples: int, strategy: dict, k_values: list, seed: int = 0):
  difficulty, test_fraction = _task()
  c = eval_config()
  c.checkpoint = checkpoint
  c.sampling.strategy = strategy
  c.sampling.max_new_tokens = 48
  c.sampling.seed = seed
  c.eval.benchmarks = ("synthetic",)
  c.eval.num_examples = num_examples
  c.eval.prompt_style = "plain"
  c.eval.k_values = tuple(k_values)
  c.eval.bootstrap_resamples = 500
  c.eval.benchmark_options = {"synthetic": {"num_examples": num_examples, "seed": 0, "test_fraction": test_fraction,
                                            **difficulty}}
  return c


def get_config() -> ml_collections.ConfigDict:
  difficulty, test_fraction = _task()
  c = config_dict(RecipeConfig)
  c.workdir = "runs/toy"
  s = ml_collections.ConfigDict()

  s.corpus = corpus_toy.get_config()

  s.sources = materialize.default_config()
  s.sources.synthetic.num_train = 2000
  s.sources.synthetic.test_fraction = test_fraction
  s.sources.synthetic.difficulty = difficulty
  s.sources.code.max_chars = 500_000

  pre = pretrain_toy.get_config()
  pre.data.sources = {
      "math_corpus": {"path": "{run}/corpus/corpus/corpus-*.jsonl", "text_field": "text", "weight": 0.5},
      "synthetic": {"path": "{run}/sources/synthetic_train.jsonl", "text_field": "text", "weight": 0.3},
      "code": {"path": "{run}/sources/code.jsonl", "text_field": "text", "weight": 0.1},
      "natural_language": {"path": "shared:web/dclm_*_data.jsonl", "text_field": "text", "weight": 0.1},
  }
  pre.train.total_steps = 200
  s.pretrain = pre

  sft = _rl_from("{run}/pretrain")
  sft.rl.method = "sft"  # the paradigm's SFT: gold solutions, gradient coefficient 1
  sft.rl.steps = 400
  sft.optimizer.peak_lr = 3e-3
  s.sft = sft

  s.grpo = _rl_from("{run}/sft")

  greedy = {"name": "greedy"}
  for stage in ("pretrain", "sft", "grpo"):
    s[f"eval_{stage}"] = _eval("{run}/" + stage, num_examples=100, strategy=greedy, k_values=[1])
  sampled = {"name": "temperature", "temperature": 0.7}  # the paper's Figure 7 setting
  for stage in ("sft", "grpo"):
    s[f"passk_{stage}"] = _eval("{run}/" + stage, num_examples=50, strategy=sampled, k_values=[1, 2, 4, 8, 16], seed=1)

  c.stages = s
  c.stage_order = ["corpus", "sources", "pretrain", "sft", "grpo", "eval_pretrain", "eval_sft", "eval_grpo",
                   "passk_sft", "passk_grpo"]
  c.report = {"accuracy": [["pre-training", "eval_pretrain"], ["SFT", "eval_sft"], ["GRPO", "eval_grpo"]],
              "pass_maj": [["SFT", "passk_sft"], ["GRPO", "passk_grpo"]]}
  return c
