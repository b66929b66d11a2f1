"""GRPO on GSM8K + MATH train from Qwen2.5-Math-1.5B (the base model of Dr. GRPO, SimpleRL-Zoo and many GRPO
replications), with the paper's GRPO hyper-parameters (configs/grpo_gsm8k_math.py: G 64, 16 questions, 1024 new
tokens, lr 1e-6, KL 0.04) and the rule reward through math-verify.

  python -m experiments.run --config configs/hf_import_qwen2_5_math.py --config.hf_path=<Qwen2.5-Math-1.5B dir>
  python -m experiments.run --config configs/grpo_qwen2_5_math_1_5b.py --workdir runs/grpo_qwen2.5_math_1.5b
  python -m experiments.plan --config configs/grpo_qwen2_5_math_1_5b.py --meshes='1,1,1 1,2,1 1,4,1'
init_from is the imported run (model config and tokenizer from its run.json). Prompts: the paper's chain-of-thought
instruction (task.prompt zero_shot) as the user turn of the model's own chat template (task.chat: Qwen2.5-Math's
template adds its system turn), rollouts ending at <|im_end|> (the template's end of turn) or <|endoftext|>.
Qwen2.5-Math's context is 4096 tokens: the 512-token prompt budget + 1024 new tokens fit. `model` is the config the
import gives (bf16 compute, float32 master params, full remat), spelled out so `experiments.plan` has it; the run
checks it against init_from's run.json. The mesh is the smallest that fits an H100 80GB (BENCHMARKS.md).
"""
import dataclasses

from configs.grpo_gsm8k_math import get_config as _paper
from dsmath.model import ModelConfig


def qwen_grpo(preset: str, init_from: str):
  c = _paper()
  c.init_from = init_from
  c.model = dataclasses.asdict(ModelConfig.preset(preset, dtype="bfloat16", remat="full"))
  c.task.chat = True
  return c


def get_config():
  c = qwen_grpo("qwen2.5-math-1.5b", "runs/qwen2.5-math-1.5b")
  # On one chip: micro-batches of 32 completions and 256 sampled at a time (4 questions x G 64) keep the update's and
  # the decode's scratch below the state (BENCHMARKS.md: 8 micro-batches of 128 and 512 rows need 2 chips).
  c.rl.grad_accum_steps = 32
  c.rollout.max_rows = 256
  c.mesh.shape = (1, 1, 1)
  return c
