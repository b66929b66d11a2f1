"""The `eval` stage: a finished run (run.json: model config, tokenizer, checkpoint) through the JAX sampler on the
configured benchmarks. The config is EvalStageConfig (dsmath.eval.config), resolved once here."""
import ml_collections

from dsmath import config as config_lib
from dsmath import sample
from dsmath.eval.config import EvalStageConfig, SamplingConfig
from dsmath.eval.evaluate import run as run_evaluation
from dsmath.runs import Run, load_run


def default_config() -> ml_collections.ConfigDict:
  """Every key of the stage with its default, for configs/eval_*.py (and --config.a.b=... overrides)."""
  return config_lib.config_dict(EvalStageConfig)


def generator(run: Run, s: SamplingConfig, sandbox=None, chat: bool = False) -> sample.GenerateFn:
  """The text generator of the run's final policy (model config and tokenizer from its run.json). Tool rounds run
  their programs under config.eval.sandbox's isolation, as PoT programs are; chat: prompts in the tokenizer's chat
  template."""
  import jax
  isolation = dict(sandbox or {}).get("isolation", "auto")
  tools = sample.ToolConfig(max_rounds=s.tool_rounds, isolation=isolation) if s.tool_rounds else None
  return sample.text_generator(run.model, run.load_params(), run.load_tokenizer(), max_new_tokens=s.max_new_tokens,
                               strategy=sample.strategy_from_config(s.strategy), rng=jax.random.key(s.seed),
                               batch_rows=s.batch_rows, tools=tools, chat=chat)


def run(config, workdir: str) -> dict:
  cfg = config_lib.resolve(EvalStageConfig, config)
  if not cfg.checkpoint:
    raise config_lib.ConfigError("config.checkpoint is empty: the finished run to evaluate (pass --checkpoint or "
                                 "set it in the config)")
  policy = load_run(cfg.checkpoint)
  summaries = run_evaluation(cfg.eval, generator(policy, cfg.sampling, cfg.eval.sandbox, cfg.eval.chat), workdir)
  return {**summaries, "run": {"path": policy.path, "job": policy.job, "step": policy.step}}
