"""GRPO with a learned outcome reward model (the paper's outcome supervision, sec. 4.1.2) on the toy task, with the
settings that make it improve the policy (chosen on the validation split; EXPERIMENTS.md, "Learned reward models").

The reward model is a scalar head on the policy's body trained on rule labels of the SFT policy's own samples; its
score is the only training reward (the rule grader only measures: rollouts.jsonl, `accuracy`, the over-optimisation
check). configs/grpo_orm_paper_toy.py is the paper-faithful run that collapses, kept for comparison.
"""
from configs.grpo_orm_paper_toy import get_config as _paper

# what the recipe's RL stage keeps for this config (configs/toy.py:rl:grpo_orm_toy): its learning rate
LR = 1e-4
RECIPE_RL: dict = {"optimizer.peak_lr": LR}


def get_config():
  c = _paper()  # what differs from the paper-faithful run:
  # A reward model that reads labels of new questions: ~900 questions x 4 samples of the policy (the paper's 64
  # samples memorise and then score new questions near chance), 400 steps.
  c.reward_model.questions = 1000
  c.reward_model.samples_per_question = 4
  c.reward_model.heldout_questions = 256
  # Trained for what GRPO reads, the order of one question's samples: at the paper-config lr 1e-3 (no warm-up) the
  # body loses that order (held-out within-question pair accuracy 0.45-0.80 over seeds); at 3e-4 for 800 steps, keeping
  # the state that orders 256 further questions' pairs best, 0.61-0.79 (configs/sweep_rm_selection.py)
  c.reward_model.lr = 3e-4
  c.reward_model.steps = 800
  c.reward_model.select_every = 50
  # Advantages r - mean(r) without the group std: GRPO's std turns a reward model's small score differences inside
  # a group the grader cannot split into unit-size advantages
  c.advantage.scale_std = False
  # A third of the rule reward's lr: at 3e-4 the policy finds the reward model's errors within ~100 steps (held-out
  # accuracy up at step 50, back down by 200); at 1e-4 the gain holds (validation, seed 0: +0.02 vs +0.09)
  c.optimizer.peak_lr = LR
  return c
