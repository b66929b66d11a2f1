"""GRPO (outcome supervision, rule reward) on the synthetic arithmetic task with a tiny model, on a CPU in minutes.

  python -m experiments.run --config configs/grpo_toy.py --workdir runs/grpo_toy
Without init_from the policy starts from a short warm-up of the paradigm's SFT entry on gold solutions
(rl.sft_warmup_steps); the RL hyper-parameters are the paper's except the ones scaled to the toy (group size, batch,
lengths, learning rate).
"""
from dsmath.rl.config import default_config


def get_config():
  c = default_config()
  c.seed = 0
  # config.model stays the "tiny" preset (a policy of its own when there is no init_from; init_from's otherwise)
  c.task.tokenizer_type, c.task.tokenizer_vocab = "bpe", 384  # prompts <= 30 pieces, solutions <= 26 with EOS
  c.task.synthetic.num_train = 2000
  c.task.synthetic.num_test = 200
  d = c.task.synthetic.difficulty
  d.min_steps, d.max_steps, d.max_number, d.ops = 1, 2, 9, ("+", "-")
  c.rl.method = "grpo"
  c.rl.steps = 20
  c.rl.sft_warmup_steps = 400
  c.rl.sft_lr = 3e-3
  c.rl.sft_batch = 32
  c.rollout.prompts_per_step = 8
  c.rollout.group_size = 8
  c.rollout.max_new_tokens = 32
  c.optimizer.peak_lr = 1e-4  # the paper's 1e-6 is for a 7B model; a 200K-parameter policy needs a larger step
  c.eval.num_questions = 64
  c.checkpoint.every = 10
  return c
