"""GRPO on GSM8K + MATH train from Qwen2.5-Math-7B: configs/grpo_qwen2_5_math_1_5b.py at 7B (the paper's GRPO
hyper-parameters, the rule reward through math-verify, the CoT instruction in the model's chat template).

  python -m experiments.run --config configs/hf_import_qwen2_5_math.py --config.hf_path=<Qwen2.5-Math-7B dir> \\
      --workdir runs/qwen2.5-math-7b
  python -m experiments.run --config configs/grpo_qwen2_5_math_7b.py --workdir runs/grpo_qwen2.5_math_7b
  python -m experiments.plan --config configs/grpo_qwen2_5_math_7b.py --meshes='1,2,1 1,4,1 1,8,1'
As configs/grpo_7b.py does for DeepSeekMath 7B: the update in 16 micro-batches of 64 completions, 256 completions
sampled at a time. The mesh is the smallest that fits an H100 80GB (BENCHMARKS.md); on a pod set distributed too.
"""
from configs.grpo_qwen2_5_math_1_5b import qwen_grpo


def get_config():
  c = qwen_grpo("qwen2.5-math-7b", "runs/qwen2.5-math-7b")
  c.rl.grad_accum_steps = 16
  c.rollout.max_rows = 256  # 4 questions x G 64 in the KV cache at a time
  c.mesh.shape = (1, 4, 1)
  return c
