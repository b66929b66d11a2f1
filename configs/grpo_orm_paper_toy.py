"""GRPO with a learned outcome reward model as the paper runs it (sec. 4.1.2), on the toy task: a scalar head trained
on rule labels of a small sample (32 questions x 2 samples, 50 steps), its score the only reward. It collapses the
policy at toy scale (EXPERIMENTS.md, "Learned reward models"); configs/grpo_orm_toy.py holds the settings that make
it learn."""
from configs.grpo_toy import get_config as _base


def get_config():
  c = _base()
  c.rl.reward = "orm"
  c.reward_model.lr = 1e-3  # the paper's 2e-5 is for a 7B reward model
  c.reward_model.questions = 32
  c.reward_model.samples_per_question = 2
  c.reward_model.steps = 50
  c.reward.verifier_weight = 0.0
  return c
