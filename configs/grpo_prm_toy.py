"""GRPO with process supervision by a learned process reward model (the paper's GRPO+PS, sec. 4.1.3) on the toy task,
with the settings that make it improve the policy (chosen on the validation split; EXPERIMENTS.md, "Learned reward
models").

The PRM is a scalar head on the policy's body trained on Math-Shepherd labels of the SFT policy's own samples (a step
is good when one of 4 completions from it reaches the gold answer); its step scores are the only training reward
(the rule grader only measures). configs/grpo_prm_paper_toy.py is the paper-faithful run that collapses.
"""
from configs.grpo_prm_paper_toy import get_config as _paper

# what the recipe's RL stage keeps for this config (configs/toy.py:rl:grpo_prm_toy)
RECIPE_RL: dict = {}


def get_config():
  c = _paper()  # what differs from the paper-faithful run:
  c.reward_model.questions = 256
  c.reward_model.samples_per_question = 4
  c.reward_model.steps = 200
  c.reward_model.heldout_questions = 128
  # Group-relative process advantages (exactly zero where the outputs agree) with min-form credit (PURE): a token is
  # worth the worst step from it on, so extra steps cannot pay, and no std division to amplify score noise
  c.rl.estimator = "grpo_process_relative"
  c.advantage.credit = "min"
  c.advantage.scale_std = False
  return c
