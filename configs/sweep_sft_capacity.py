"""Why the earlier toy recipe's GRPO did not learn, part 1: what the SFT model can compute, and whether it has mistakes
RL could remove. Model size x the SFT teacher's slip rate, held-out accuracy on the validation split, seed 0.

  python -m experiments.sweep --config configs/sweep_sft_capacity.py
Each cell runs the toy recipe's first stages (configs/toy.py:base: corpus, sources, pre-training, the train-job SFT)
with the model and the teacher's slip set by the axes, then evaluates the SFT model on 200 validation questions:
greedy, and 4 samples a question at T = 0.7. "tiny" is the preset the earlier recipe trained (hidden 64, 2 layers);
"small" the recipe's model now (hidden 128, 4 layers). Slip 0: the teacher writes right solutions, so the SFT model's
errors are its own failures to compute; slip 0.9: it imitates the teacher's carry/borrow slips.
"""
from configs import toy
from dsmath.config import config_dict
from dsmath.sweep import SweepConfig

# The tiny preset's shapes, set key by key over the recipe's model (a sweep override sets one value a key).
TINY = {"hidden_size": 64, "intermediate_size": 172, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}


def get_config():
  c = config_dict(SweepConfig)
  c.name = "RL diagnosis 1: SFT accuracy by model size and teacher slip (validation split)"
  c.sweep_dir = "runs/sweep_sft_capacity"
  c.results_dir = "results/sft_capacity"
  c.parallel = 1
  c.stage_timeout_s = 3600
  c.stages = [{"name": "base", "config": "configs/toy.py:base", "overrides": {}},
              {"name": "greedy", "config": "configs/toy.py:validation:greedy", "overrides": {"checkpoint": "{base}/sft"}},
              {"name": "sampled", "config": "configs/toy.py:validation:sampled",
               "overrides": {"checkpoint": "{base}/sft"}}]
  c.axes = [
      {"name": "model", "levels": [
          {"name": "tiny", "set": {f"base/stages.pretrain.model.{k}": v for k, v in TINY.items()}},
          {"name": "small", "set": {f"base/stages.pretrain.model.{k}": v for k, v in toy.MODEL.items()
                                    if k != "preset"}}]},
      {"name": "slip", "values": [0.0, 0.9], "keys": ["base/stages.sources.synthetic.teacher.slip"]},
  ]
  c.aggregate = {"group_by": ["model", "slip"], "metrics": [
      {"name": "SFT greedy accuracy (validation)", "stage": "greedy", "path": "synthetic.accuracy"},
      {"name": "SFT sampled accuracy, T 0.7 (validation)", "stage": "sampled", "path": "synthetic.pass@1"}]}
  return c
