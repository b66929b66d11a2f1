"""Iterative GRPO (the paper's Algorithm 1) with the learned outcome reward model of configs/grpo_orm_toy.py: each
iteration resets pi_ref to the policy, then the reward model continues training on the current policy's samples plus
a 10% replay of earlier rounds. In the recipe (configs/toy.py:rl:grpo_iterative_toy) it runs 2 iterations of 100
steps, the same 200 RL steps as one iteration (Figure 6's orm_two arm; EXPERIMENTS.md, "Learned reward models")."""
from configs.grpo_orm_toy import LR
from configs.grpo_orm_toy import get_config as _base

ITERATIONS = 2
# what the recipe's RL stage keeps for this config: the ORM's lr, and 2 x 100 steps
RECIPE_RL: dict = {"optimizer.peak_lr": LR, "rl.steps": 200 // ITERATIONS}


def get_config():
  c = _base()
  c.rl.iterations = ITERATIONS
  c.rl.steps = 10
  c.reward_model.replay_fraction = 0.1
  return c
