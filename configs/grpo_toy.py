"""GRPO (outcome supervision, rule reward) on the synthetic arithmetic task with a tiny model, on a CPU in minutes.

python -m experiments.run --config configs/grpo_toy.py --workdir runs/grpo_toy
The policy starts from a short SFT warm-up on gold solutions (rl.sft_warmup_steps); the RL hyper-parameters are the
paper's except the ones scaled to the toy (group size, batch, lengths, learning rate).
"""
from dsmath.rl.trainer import default_config


def get_config():
  c = default_config()
  c.job = "rl"
  c.seed = 0
  c.model = {"preset": "tiny", "vocab_size": 384, "hidden_size": 64, "intermediate_size": 192, "num_layers": 2,
             "num_heads": 4, "num_kv_heads": 2, "max_positions": 128}
  c.task.tokenizer_type, c.task.tokenizer_vocab = "bpe", 384  # prompts <= 30 pieces, solutions <= 26 with EOS
  c.task.num_train = 2000
  c.task.num_test = 200
  c.task.difficulty.min_steps = 1
  c.task.difficulty.max_steps = 2
  c.task.difficulty.max_number = 9
  c.task.difficulty.ops = ("+", "-")
  c.rl.method = "grpo"
  c.rl.reward = "rule"
  c.rl.steps = 20
  c.rl.prompts_per_step = 8
  c.rl.group_size = 8
  c.rl.max_new_tokens = 32
  c.rl.sft_warmup_steps = 400
  c.rl.sft_lr = 3e-3
  c.rl.sft_batch = 32
  c.optimizer.peak_lr = 1e-4  # the paper's 1e-6 is for a 7B model; a 200K-parameter policy needs a larger step
  return c
