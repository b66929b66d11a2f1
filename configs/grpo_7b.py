"""The paper's GRPO at 7B (sec. 4.2), for `python -m experiments.plan` and for real pods.

  python -m experiments.plan --config configs/grpo_7b.py     # per-device memory of rollout, scoring and update,
                                                              # compiled ahead of time on simulated meshes
The policy is DeepSeekMath-Instruct 7B (bf16 compute, float32 master params, full remat), a frozen reference
(pi_ref <- pi_theta each iteration) and a learned outcome reward model of the same size (trained between
iterations); G = 64 outputs of at most 1024 tokens for 16 questions a step (a batch of 1024), one policy update per
exploration in 16 micro-batches of 64 completions. On a pod set init_from (the SFT run), mesh.shape and distributed.
"""
from configs.grpo_gsm8k_math import get_config as _paper


def get_config():
  c = _paper()
  c.model = {"preset": "7b", "dtype": "bfloat16", "remat": "full"}  # without init_from (a plan); a pod run's comes
  c.rl.reward = "orm"  # the paper's learned reward model                  # from init_from instead
  c.rl.iterations = 2
  c.rl.grad_accum_steps = 16
  c.reward_model.lr = 2e-5
  c.mesh.shape = (1, 16, 1)
  return c
