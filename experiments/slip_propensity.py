"""How much of its probability a recipe model puts on the right carry / borrow against the SFT teacher's slip
(dsmath.eval.slips), on the held-out questions of the recipe's synthetic task.

  python -m experiments.slip_propensity runs/toy/sft [runs/toy/grpo ...] [--split validation] [--num 200] [--seed 0]

One line per run directory: the carry / borrow steps, mean p(right line), p(slip), right_share (the model's odds
between the two; the teacher writes the right one 1 - slip of the time) and the share of steps with p(right) < 0.01.
"""
import argparse
import json

from configs import toy
from dsmath import model
from dsmath.eval.slips import slip_propensity
from dsmath.rl import tasks
from dsmath.runs import load_run


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("runs", nargs="+", help="run directories (an SFT or RL stage of the recipe)")
  ap.add_argument("--split", choices=["test", "validation"], default="test")
  ap.add_argument("--num", type=int, default=200, help="held-out questions")
  ap.add_argument("--seed", type=int, default=0, help="the task seed the questions are drawn with (the RL stage's)")
  args = ap.parse_args()
  task = toy.get_config("rl:grpo_toy").task
  task.synthetic.num_test = args.num
  task.synthetic.heldout_split = args.split
  questions = tasks.synthetic_questions(task, args.seed, "test")
  prompt = tasks.prompt_function(task, "synthetic")
  for run_dir in args.runs:
    run = load_run(run_dir)
    params = run.load_params(model.abstract_params(run.model))
    out = slip_propensity(run.model, params, run.load_tokenizer(), questions,
                          lambda q: prompt(tasks.as_record(q, "synthetic")))
    print(json.dumps({"run": run_dir, "split": args.split, **{k: round(v, 4) if isinstance(v, float) else v
                                                              for k, v in out.items()}}), flush=True)


if __name__ == "__main__":
  main()
