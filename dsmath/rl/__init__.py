"""RL in one paradigm: SFT, RFT, Online RFT, DPO, PPO, GRPO (outcome / process supervision), rewards, iterative RL."""
from dsmath.rl.advantages import ADVANTAGE_ESTIMATORS, gae, grpo_outcome, grpo_process, ppo_token_rewards, whiten
from dsmath.rl.losses import (AGGREGATIONS, GRADIENT_COEFFICIENTS, POLICY_LOSSES, LossConfig, aggregate, dpo_loss,
                              grpo_loss, kl_k3, ppo_policy_loss, ppo_value_loss, sft_loss, surrogate_objective)
from dsmath.rl.policy import completion_logprobs, completion_scalars, init_scalar_head, scalar_head_from_policy
from dsmath.rl.rewards import (REWARDS, math_shepherd_labels, reward_model_loss, rule_rewards, step_check_rewards,
                               token_ends)
from dsmath.rl.steps import make_policy_step, make_value_step
from dsmath.rl.task import Task, build_task
from dsmath.rl.trainer import METHODS, RLTrainer, default_config, run
