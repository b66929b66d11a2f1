"""The slip propensity diagnostic (dsmath.eval.slips): which steps are carry / borrow steps, and the teacher-forced
log-probabilities of the right and the slipped line against the RL package's own per-token log-probs
(dsmath.rl.policy.completion_logprobs, a separate code path: left-padded prompt + right-padded completion)."""
import jax.numpy as jnp
import numpy as np

from dsmath import model
from dsmath.data import synthetic
from dsmath.eval import slips
from dsmath.rl import policy
from dsmath.runs import load_run

QUESTIONS = [
    synthetic.Problem("Ben has 3 cards. He buys 3 more. He buys 7 more. How many cards does Ben have?",
                      "3 + 3 = 6\n6 + 7 = 13\n\\boxed{13}", "13"),
    synthetic.Problem("Sam has 15 eggs. He eats 7. How many eggs does Sam have?", "15 - 7 = 8\n\\boxed{8}", "8"),
    synthetic.Problem("Tom has 5 pens. He buys 1 more. How many pens does Tom have?", "5 + 1 = 6\n\\boxed{6}", "6"),
]


def _prompt(q):
  return q.question + "\n"


def test_slip_steps_are_the_carry_and_borrow_steps():
  steps = slips.slip_steps(QUESTIONS, _prompt)
  assert [(s.right, s.slip) for s in steps] == [(" 13\n", " 3\n"), (" 8\n", " 12\n")]  # 6 + 7 drops the carry,
  assert steps[0].context == QUESTIONS[0].question + "\n3 + 3 = 6\n6 + 7 ="           # 15 - 7 takes 7 - 5
  assert steps[1].context == QUESTIONS[1].question + "\n15 - 7 ="


def test_line_logprobs_equal_the_rl_packages_logprobs(rl_parent_run):
  run = load_run(rl_parent_run)
  tok, params = run.load_tokenizer(), run.load_params(model.abstract_params(run.model))
  steps = slips.slip_steps(QUESTIONS, _prompt)
  got = slips.line_logprobs(run.model, params, tok, steps)
  assert got.shape == (2, 2) and np.isfinite(got).all()
  for i, s in enumerate(steps):
    for j, line in enumerate((s.right, s.slip)):
      ids, start = slips.continuation_tokens(tok, s.context, line)
      prompt, completion = jnp.asarray([ids[:start]]), jnp.asarray([ids[start:]])
      logp, _ = policy.completion_logprobs(run.model, params, prompt, jnp.ones_like(prompt, jnp.float32),
                                           completion, jnp.ones_like(completion, jnp.float32))
      np.testing.assert_allclose(got[i, j], float(logp.sum()), rtol=1e-5, atol=1e-5)
  out = slips.slip_propensity(run.model, params, tok, QUESTIONS, _prompt)
  p = np.exp(got)
  assert out["steps"] == 2
  np.testing.assert_allclose([out["p_right"], out["p_slip"], out["right_share"]],
                             [p[:, 0].mean(), p[:, 1].mean(), (p[:, 0] / p.sum(1)).mean()], rtol=1e-6)
