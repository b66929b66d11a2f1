"""The paper's GRPO hyper-parameters (sec. 4.2): G 64, policy lr 1e-6, KL beta 0.04, eps 0.2, max length 1024,
mu 1, a learned reward model (reward model lr 2e-5, 10% replay in iterative RL). Set model/tokenizer/init_from for a
real run; the task defaults to the synthetic one."""
from dsmath.rl.trainer import default_config


def get_config():
  c = default_config()
  c.rl.method = "grpo"
  c.rl.reward = "orm"
  c.rl.group_size = 64
  c.rl.max_new_tokens = 1024
  c.rl.iterations = 2
  return c
