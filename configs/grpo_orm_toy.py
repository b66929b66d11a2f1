"""GRPO with a learned outcome reward model on the synthetic task: the RM (a scalar head on a copy of the policy) is
trained on rule-labelled samples of the policy before RL; only the reward changes from configs/grpo_toy.py."""
from configs.grpo_toy import get_config as _grpo_toy


def get_config():
  c = _grpo_toy()
  c.rl.reward = "orm"
  c.rl.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  return c
