"""RL in one paradigm (data source x reward x gradient coefficient): SFT, RFT, Online RFT, DPO, PPO, GRPO with outcome
and process supervision, iterative RL, and beyond the paper Dr. GRPO, DAPO, GSPO, RLOO, all as registry entries.

  resolve_rl_config(config) -> RLRun        the stage config checked once and completed by its method
  build_task(task_cfg, tokenizer, seed)     the question set as prompt arrays (GSM8K, MATH, synthetic, JSONL)
  RLStep(run, model_cfg, task)              rl_step(state, questions) -> (state, metrics), on the mesh
  run(config, workdir)                      the stage: iterations, reward-model rounds, checkpoints, exact resume
"""
from dsmath.rl.advantages import ESTIMATORS, gae, grpo_outcome, grpo_process, ppo_token_rewards, rloo, whiten
from dsmath.rl.config import RLStageConfig, default_config
from dsmath.rl.losses import (AGGREGATIONS, GRADIENT_COEFFICIENTS, POLICY_LOSSES, LossConfig, aggregate, dapo_loss,
                              dpo_loss, dr_grpo_loss, grpo_loss, gspo_loss, kl_k3, ppo_policy_loss, ppo_value_loss,
                              sft_loss, surrogate_objective)
from dsmath.rl.loop import run
from dsmath.rl.methods import DATA_SOURCES, METHODS, DataSource, Method, RLRun, resolve_rl_config
from dsmath.rl.policy import completion_logprobs, completion_scalars
from dsmath.rl.rewards import REWARDS, RuleReward, overlong_penalty
from dsmath.rl.step import RLStep
from dsmath.rl.tasks import Task, build_task, stream_indices
