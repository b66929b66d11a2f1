"""The paper's GRPO at 7B (sec. 4.2), for `python -m experiments.plan` and for real pods.

  python -m experiments.plan --config configs/grpo_7b.py     # per-device memory of rollout, scoring and update,
                                                              # compiled ahead of time on simulated meshes
The policy is DeepSeekMath-Instruct 7B (bf16 compute, float32 master params, full remat), a frozen reference
(pi_ref <- pi_theta each iteration) and a learned outcome reward model of the same size (trained between
iterations); G = 64 outputs of at most 1024 tokens for 16 questions a step (a batch of 1024), one policy update per
exploration in 16 micro-batches of 64 completions; the rollout samples 256 completions at a time. On a pod set init_from (the SFT run), mesh.shape and distributed.
"""
import dataclasses

from configs.grpo_gsm8k_math import get_config as _paper
from dsmath.model import ModelConfig


def get_config():
  c = _paper()
  # Every field spelled out, so any can be overridden (--config.model.num_layers=2). A plan has no parent run; a pod
  # run takes the model from init_from instead (and leaves this at the default).
  c.model = dataclasses.asdict(ModelConfig.preset("7b", dtype="bfloat16", remat="full"))
  c.rl.reward = "orm"  # the paper's learned reward model
  c.rl.iterations = 2
  c.rl.grad_accum_steps = 16
  c.rollout.max_rows = 256  # 4 questions x G 64 in the KV cache at a time
  c.reward_model.lr = 2e-5
  c.reward_model.batch = 256  # splits over the data axes of any mesh planned here
  c.mesh.shape = (1, 16, 1)
  return c
