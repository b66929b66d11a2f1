"""RL configs for tests: the repo's configs/<name>.py on a small shared toy task (one-step additions of numbers up
to 9), with dotted-key overrides."""
import importlib

TOY = {"task.synthetic.num_train": 256, "task.synthetic.num_test": 64, "task.synthetic.difficulty.min_steps": 1,
       "task.synthetic.difficulty.max_steps": 1, "task.synthetic.difficulty.max_number": 9,
       "task.synthetic.difficulty.ops": ("+",), "task.tokenizer_vocab": 384}

SMALL = {**TOY, "rl.steps": 1, "rl.sft_warmup_steps": 0, "rollout.prompts_per_step": 2, "rollout.group_size": 4,
         "rollout.max_new_tokens": 16, "eval.num_questions": 0, "checkpoint.every": 100, "reward_model.steps": 2,
         "reward_model.batch": 8, "reward_model.questions": 4, "reward_model.samples_per_question": 2,
         "reward_model.select_questions": 8,
         "reward_model.shepherd_completions": 2, "offline.samples_per_question": 4, "offline.questions": 16,
         "ppo.samples_per_question": 2}


def set_key(c, key, value):
  *path, last = key.split(".")
  node = c
  for p in path:
    node = node[p]
  node[last] = value


def config(name: str, parent=None, **overrides):
  """configs/<name>.py shrunk to SMALL (plus `overrides`), starting from the run `parent` when given."""
  c = importlib.import_module(f"configs.{name}").get_config()
  small = dict(SMALL)
  if parent is not None:
    small["init_from"] = str(parent)
  for k, v in {**small, **overrides}.items():
    set_key(c, k, v)
  return c


def flags(parent=None, **overrides) -> list:
  """The same settings as command-line flags for `python -m experiments.run`."""
  small = dict(SMALL)
  if parent is not None:
    small["init_from"] = str(parent)
  small.update(overrides)
  return [f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}" for k, v in small.items()]


def parent_config(seed: int = 0):
  """The RL tests' parent run (conftest's rl_parent_run): 60 steps of the paradigm's SFT entry, partly right."""
  return config("sft_toy", **{"rl.steps": 60, "optimizer.peak_lr": 3e-3, "rollout.prompts_per_step": 32,
                              "seed": seed})


def grpo_learning_config(parent, seed: int = 0):
  """The learning test's GRPO run: 12 steps on 8 training questions (all 8 every step, G = 8) from `parent`."""
  return config("grpo_toy", parent, **{"rl.steps": 12, "rollout.prompts_per_step": 8, "rollout.group_size": 8,
                                       "optimizer.peak_lr": 3e-4, "task.synthetic.num_train": 8, "seed": seed})


def rollout_accuracy_gain(workdir) -> tuple[float, float, list]:
  """The learning test's statistic: mean rollout accuracy of the first 3 and of the last 3 steps, and every step's."""
  import json
  acc = [json.loads(line)["accuracy"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
         if '"accuracy"' in line]
  return sum(acc[:3]) / 3, sum(acc[-3:]) / 3, acc


METRIC_KEYS = ("reward_mean", "reward_std", "accuracy", "zero_std_group_fraction", "entropy", "completion_len_mean",
               "truncated_fraction", "rollout_s", "scoring_s", "update_s", "step_s", "tokens_per_s", "loss",
               "grad_norm")


def first_round_scores(cfg, workdir, split: str):
  """The first reward-model round's rows of `split` ("heldout", "select"), sampled again from the run's step-0
  checkpoint with the round's keys, and that checkpoint's reward-model scores of them; and the run's reward kind."""
  import jax
  import numpy as np

  from dsmath import rl
  from dsmath.rl.loop import RLLoop
  loop = RLLoop(rl.resolve_rl_config(cfg), workdir)
  try:
    state = loop.checkpointer.restore(0, loop._abstract_state())
    rows, _ = loop.rm.new_rows(state, 0, loop.cfg.seed, split=split)
    batch = {k: loop.rl.to_rows(rows[k]) for k in ("prompt", "prompt_mask", "completion", "mask")}
    with loop.rl.scope():
      scores = np.asarray(jax.device_get(loop.rl.reward_scores(state["reward_model"]["params"], batch)))
  finally:
    loop.checkpointer.close()
    loop.rl.close()
  return rows, scores, loop.run.reward


def heldout_label_accuracy(cfg, workdir) -> float:
  """The first reward-model round's held-out label accuracy, recomputed from what the run left: the agreement of the
  step-0 reward model's scores > 0.5 with the labels > 0.5 (at step ends for a PRM on step labels, at the last token
  for a model trained on the answer's label)."""
  import numpy as np
  rows, scores, reward = first_round_scores(cfg, workdir, "heldout")
  if reward == "prm" and cfg.reward_model.label != "outcome":
    at = rows["step_mask"] > 0
    return float(np.mean((scores[at] > 0.5) == (rows["step_label"][at] > 0.5)))
  last = rows["mask"].sum(1).astype(int) - 1
  return float(np.mean((scores[np.arange(len(last)), last] > 0.5) == (rows["label"][:, 0] > 0.5)))
