"""The whole DeepSeekMath recipe at toy scale on a 2-core CPU (README's first command; the default config):

  corpus mining on the toy crawl -> generated sources (synthetic task, stdlib code) -> tokenizer + continued
  pre-training on the Grain mixture -> SFT -> GRPO -> held-out evaluation after each stage, Pass@K / Maj@K of the
  SFT and GRPO models -> runs/toy/report.md

  python -m experiments.run --config configs/toy.py            # re-running skips finished stages, resumes the rest

Every stage is an ordinary job config below; "{run}" stands for the run directory. The held-out task is the
synthetic arithmetic test split (disjoint from train by construction; never trained on).
"""
import ml_collections

from configs import corpus_toy, grpo_toy, pretrain_toy
from dsmath.data import materialize
from dsmath.eval.checkpoint_eval import default_config as eval_config

MODEL = {"preset": "tiny", "vocab_size": 512}
TOKENIZER = "{run}/pretrain/tokenizer/spm.model"


def _task(c):
  """The synthetic task's shape, shared by the sources, the RL stages and the evaluations."""
  g = grpo_toy.get_config()
  return g.task.difficulty.to_dict(), float(g.task.test_fraction)


def _eval(checkpoint: str, *, num_examples: int, strategy: dict, k_values: list, seed: int = 0):
  difficulty, test_fraction = _task(None)
  c = eval_config()
  c.checkpoint = checkpoint
  c.model = MODEL
  c.tokenizer = TOKENIZER
  c.sampling.strategy = strategy
  c.sampling.max_new_tokens = 48
  c.sampling.seed = seed
  c.eval.benchmarks = ["synthetic"]
  c.eval.num_examples = num_examples
  c.eval.prompt_style = "plain"
  c.eval.k_values = k_values
  c.eval.bootstrap_resamples = 500
  c.eval.benchmark_options = {"synthetic": {"num_examples": num_examples, "seed": 0, "test_fraction": test_fraction,
                                            **difficulty}}
  return c


def get_config() -> ml_collections.ConfigDict:
  difficulty, test_fraction = _task(None)
  c = ml_collections.ConfigDict()
  c.job = "recipe"
  c.workdir = "runs/toy"
  s = ml_collections.ConfigDict()

  s.corpus = corpus_toy.get_config()

  s.sources = materialize.default_config()
  s.sources.synthetic.num_train = 2000
  s.sources.synthetic.test_fraction = test_fraction
  s.sources.synthetic.difficulty = difficulty
  s.sources.code.max_chars = 500_000

  pre = pretrain_toy.get_config()
  pre.model = MODEL
  pre.data.sources = {
      "math_corpus": {"path": "{run}/corpus/corpus/corpus-*.jsonl", "text_field": "text", "weight": 0.5},
      "synthetic": {"path": "{run}/sources/synthetic_train.jsonl", "text_field": "text", "weight": 0.3},
      "code": {"path": "{run}/sources/code.jsonl", "text_field": "text", "weight": 0.1},
      "natural_language": {"path": "shared:web/dclm_*_data.jsonl", "text_field": "text", "weight": 0.1},
  }
  pre.train.total_steps = 200
  s.pretrain = pre

  sft = grpo_toy.get_config()
  sft.model = MODEL
  sft.tokenizer = TOKENIZER
  sft.init_from = "{run}/pretrain"
  sft.rl.method = "sft"  # the paradigm's SFT: gold solutions, gradient coefficient 1
  sft.rl.steps = 400
  sft.rl.sft_warmup_steps = 0
  sft.optimizer.peak_lr = 3e-3
  s.sft = sft

  grpo = grpo_toy.get_config()
  grpo.model = MODEL
  grpo.tokenizer = TOKENIZER
  grpo.init_from = "{run}/sft"
  grpo.rl.sft_warmup_steps = 0
  s.grpo = grpo

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
