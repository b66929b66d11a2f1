"""GRPO on the paper's RL questions: GSM8K and MATH train (their test splits held out for evaluation during RL), the
chain-of-thought instruction with a \\boxed{} answer, the rule reward through the math-verify grader, and the paper's
hyper-parameters (sec. 4.2): G = 64, 1024 new tokens, 16 questions a step (a batch of 1024), policy lr 1e-6, KL 0.04,
one update per exploration.

  python -m experiments.run --config configs/grpo_gsm8k_math.py --workdir runs/grpo_math \\
      --config.init_from=runs/<your SFT run>        # model and tokenizer come from that run's run.json
The paper's reward was a learned model: --config.rl.reward=orm (or prm for process supervision, iterations=2 for
iterative RL). Tool-integrated RL (the policy's python blocks run in the sandbox during rollouts and evaluation):
--config.task.prompt=tool --config.rollout.tool_rounds=4. Pods: set mesh.shape and distributed (see
configs/grpo_7b.py and launch/tpu_pod.sh).
"""
from dsmath.rl.config import default_config


def get_config():
  c = default_config()
  c.task.sources = {"gsm8k": {"kind": "gsm8k"}, "math": {"kind": "math"}}
  c.task.prompt = "zero_shot"
  c.task.prompt_budget = 512  # longer questions are reported with file and line and left out
  c.rl.method = "grpo"
  c.rl.reward = "rule"
  c.rl.steps = 1000
  c.rollout.prompts_per_step = 16
  c.rollout.group_size = 64
  c.rollout.max_new_tokens = 1024
  c.rollout.temperature = 1.0
  c.eval.num_questions = 500
  c.eval.every = 100
  c.eval.samples = 0
  c.checkpoint.every = 50
  return c
