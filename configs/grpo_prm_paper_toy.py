"""GRPO+PS with a learned process reward model as the paper runs it (sec. 4.1.3), on the toy task: the paper's
process advantage (step rewards normalised over the group, summed over later steps), a Math-Shepherd PRM (hard labels)
from a small sample (32 questions x 2 samples, 50 steps), no verifier term. It collapses the policy at toy scale
(EXPERIMENTS.md, "Learned reward models"); configs/grpo_prm_toy.py holds the settings that make it learn."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.reward = "prm"
  c.rl.estimator = "grpo_process"
  c.advantage.credit = "sum"
  c.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  c.reward_model.label = "hard"
  c.reward_model.questions = 32
  c.reward_model.samples_per_question = 2
  c.reward_model.steps = 50
  c.reward.verifier_weight = 0.0
  return c
