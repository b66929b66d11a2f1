"""Rule reward via the evaluation grader, step-checker process rewards at end tokens, Math-Shepherd labels, RM loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model
from dsmath.data import synthetic as syn
from dsmath.rl import rewards


def test_rule_reward_grades_in_workers_and_requires_a_boxed_answer():
  texts = ["2 + 3 = 5\n\\boxed{5}", "\\boxed{5.0}", "the answer is 5", "\\boxed{6}", "so $\\boxed{\\frac{10}{2}}$"]
  reward = rewards.RuleReward("math_verify")
  try:
    future = reward.submit(texts, ["5"] * 5)  # returns before grading finishes
    graded = future.result()
    np.testing.assert_array_equal(graded.reward, [1, 1, 0, 0, 1])  # the unboxed 5 is not graded
    np.testing.assert_array_equal(graded.correct, graded.reward)
    shaped = rewards.RuleReward("paper", unformatted_reward=-1.0, grader=reward.grader)(texts[2:4], ["5", "5"])
    np.testing.assert_array_equal(shaped.reward, [-1.0, 0.0])  # the format rule shapes the reward ...
    np.testing.assert_array_equal(shaped.correct, [0.0, 0.0])  # ... never the verdict (accuracy, RFT data, labels)
    with pytest.raises(ValueError, match="gold"):
      reward.submit(texts, ["5"])
  finally:
    reward.close()


def test_overlong_penalty_is_dapos_soft_punishment():
  """DAPO Eq. 13 with L_max = 16, L_cache = 4: 0 up to 12 tokens, linear to -1 at 16, -1 when truncated."""
  lengths = jnp.array([5, 12, 13, 14, 16, 16])
  truncated = jnp.array([False, False, False, False, False, True])
  np.testing.assert_allclose(rewards.overlong_penalty(lengths, truncated, 16, 4),
                             [0.0, 0.0, -0.25, -0.5, -1.0, -1.0], rtol=1e-6)


def _char_decode(ids):
  return "".join(chr(i) for i in ids)


def test_token_ends_multi_char_tokens():
  # tokens decode to "ab", "\n", "cd\n", "e": char ends 3 ("ab\n") and 7 ("cd\n" end) and 8
  pieces = {1: "ab", 2: "\n", 3: "cd\n", 4: "e"}
  decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
  assert rewards.token_ends([1, 2, 3, 4], [3, 6, 7], decode) == [1, 2, 3]
  assert rewards.token_ends([1, 2, 3, 4], [1, 4, 5], decode) == [0, 2, 2]  # ends inside multi-character pieces


def test_step_check_rewards_placed_at_step_ends():
  q = "Ann has 7 pens. She buys 3 more. How many pens does Ann have?"
  texts = ["7 + 3 = 10\n\\boxed{10}", "7 + 3 = 11\n\\boxed{11}", ""]
  comp = np.zeros((3, 24), np.int32)
  lengths = np.array([len(t) for t in texts])
  for b, t in enumerate(texts):
    comp[b, :len(t)] = [ord(ch) for ch in t]
  ends = rewards.step_ends(texts, comp, lengths, _char_decode)
  assert ends == [[10, 20], [10, 20], [0]]
  r, m = rewards.place_step_values(rewards.step_check_values(texts, [q] * 3, ends), ends, 24)
  assert list(np.nonzero(m[0])[0]) == [10, 20] and list(r[0, [10, 20]]) == [1.0, 1.0]
  assert list(np.nonzero(m[1])[0]) == [10, 20] and list(r[1, [10, 20]]) == [0.0, 1.0]  # boxed matches its own step
  assert m[2].sum() == 1 and r[2].sum() == 0  # empty output: one zero step so it still counts in the group


def test_math_shepherd_hard_and_soft_labels():
  solution, wrong = "7 + 3 = 10\n10 - 2 = 8\n\\boxed{8}", "7 + 3 = 11\n11 - 2 = 9\n\\boxed{9}"
  texts = [solution, wrong]
  tokens = [[ord(c) for c in t] for t in texts]
  ends = [[10, 21, len(solution) - 1], [10, 21, len(wrong) - 1]]

  def complete(prefixes, n):  # a deterministic "policy": from each prefix one right and n - 1 wrong completions
    outs = []
    for row, end in prefixes:
      pre = "".join(chr(c) for c in tokens[row][:end + 1])
      last = int(syn._EQUATION.findall(pre)[-1][3])
      right = pre + f"\\boxed{{{last - 2 if pre.count(chr(10)) == 1 else last}}}"
      outs.append([right] + [pre + "\\boxed{0}"] * (n - 1))
    return outs

  grade = lambda ts, gs: np.array([float(syn.boxed_answer(t) == g) for t, g in zip(ts, gs)])  # noqa: E731
  labels = rewards.math_shepherd_labels(ends, ["8", "8"], complete, 4, texts, grade)
  assert labels[0].hard == (1.0, 1.0, 1.0) and labels[0].soft == (0.25, 0.25, 1.0)
  assert labels[1].hard == (0.0, 0.0, 0.0)  # 11 - 2 = 9 never reaches 8


def _tiny_scalar_head(hidden: int = 16):
  """A one-layer model with a fresh scalar head (a reward model's shape): (model config, params)."""
  from dsmath.rl import policy
  cfg = model.ModelConfig.preset("tiny", num_layers=1, vocab_size=32, hidden_size=hidden,
                                 intermediate_size=2 * hidden, num_heads=2, num_kv_heads=1)
  return cfg, policy.init_scalar_head(cfg, jax.random.key(0))


def _random_rows(rng, mask):
  """4 rows of random prompt (3 tokens) and completion (5 tokens) ids under `mask` [4, 5]."""
  return {"prompt": jnp.asarray(rng.integers(1, 32, (4, 3))), "prompt_mask": jnp.ones((4, 3)),
          "completion": jnp.asarray(rng.integers(1, 32, (4, 5))), "mask": jnp.asarray(mask, jnp.float32)}


def test_reward_model_losses_train_a_scalar_head():
  cfg, params = _tiny_scalar_head()
  batch = {**_random_rows(np.random.default_rng(0), np.ones((4, 5))),
           "label": jnp.array([[1.0], [0.0], [1.0], [0.0]]),
           "step_label": jnp.array([[0, 1, 0, 0, 1.0]] * 4), "step_mask": jnp.array([[0, 1, 0, 0, 1.0]] * 4)}
  for kind in ("orm", "prm"):
    loss_fn = jax.jit(rewards.reward_model_loss(cfg, kind))
    grad_fn = jax.jit(jax.grad(lambda prm: loss_fn(prm, batch)[0]))
    prm = params
    l0 = float(loss_fn(prm, batch)[0])
    assert abs(l0 - np.log(2)) < 0.05  # near-zero head at init: BCE of a coin flip
    for _ in range(30):
      prm = jax.tree.map(lambda p, g: p - 0.5 * g, prm, grad_fn(prm))
    assert float(loss_fn(prm, batch)[0]) < 0.5 * l0, kind
  with pytest.raises(ValueError, match="orm"):
    rewards.reward_model_loss(cfg, "xrm")


def test_product_pool_is_a_noisy_and_over_tokens():
  # P(right so far) at token t = prod_{s <= t} sigmoid(z_s + prior), computed here in float64 numpy; padding -> 0
  rng = np.random.default_rng(1)
  z = rng.normal(0, 3, (3, 6)).astype(np.float32)
  z[1, 2] = -30.0  # one token judged an error: P drops to ~0 from there on
  z[2, :] = 30.0  # every token judged fine: P ~ 1, a finite logit
  mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6, [1] * 6], np.float32)
  probs = np.asarray(jax.nn.sigmoid(rewards.pooled_logits(jnp.asarray(z), jnp.asarray(mask), "product"))) * mask
  per_token = 1.0 / (1.0 + np.exp(-(z.astype(np.float64) + rewards.PRODUCT_PRIOR)))
  expected = np.cumprod(np.where(mask > 0, per_token, 1.0), axis=1) * mask
  np.testing.assert_allclose(probs, expected, rtol=2e-5, atol=1e-6)
  assert np.isfinite(np.asarray(rewards.pooled_logits(jnp.asarray(z), jnp.asarray(mask), "product"))).all()
  assert np.all(np.diff(expected[1]) <= 0) and probs[1, 5] < 1e-9 and probs[2, 5] > 0.999
  np.testing.assert_array_equal(rewards.pooled_logits(jnp.asarray(z), jnp.asarray(mask), "last"), z)  # the paper's
  with pytest.raises(ValueError, match="pool"):
    rewards.pooled_logits(jnp.asarray(z), jnp.asarray(mask), "mean")


def test_product_pool_outcome_loss_is_the_bce_of_the_product_and_reaches_the_wrong_token():
  from dsmath.rl import policy
  cfg, params = _tiny_scalar_head()
  mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
  batch = {**_random_rows(np.random.default_rng(0), mask),
           "label": jnp.array([[1.0], [0.0], [1.0], [0.0]])}
  loss = float(rewards.reward_model_loss(cfg, "orm", pool="product")(params, batch)[0])
  z = np.asarray(policy.completion_scalars(cfg, params, batch["prompt"], batch["prompt_mask"], batch["completion"],
                                           batch["mask"]), np.float64)
  m, y = np.asarray(batch["mask"]), np.asarray(batch["label"])[:, 0]
  p = np.prod(np.where(m > 0, 1 / (1 + np.exp(-(z + rewards.PRODUCT_PRIOR))), 1.0), axis=1)
  np.testing.assert_allclose(loss, np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))), rtol=1e-5)


def test_product_pool_trained_on_outcomes_finds_the_wrong_token():
  # Multiple-instance learning: outputs are wrong exactly when they hold token 7 somewhere; trained on the outcome
  # label alone, the pooled probability must fall at that token, not before it
  cfg, params = _tiny_scalar_head(hidden=32)
  rng = np.random.default_rng(0)
  n, c = 64, 8
  completion = rng.integers(8, 32, (n, c))
  where = rng.integers(1, c, n)
  wrong = np.arange(n) % 2 == 1
  completion[wrong, where[wrong]] = 7
  batch = {"prompt": jnp.asarray(rng.integers(8, 32, (n, 2))), "prompt_mask": jnp.ones((n, 2)),
           "completion": jnp.asarray(completion), "mask": jnp.ones((n, c)),
           "label": jnp.asarray((~wrong).astype(np.float32)[:, None])}
  loss_fn = rewards.reward_model_loss(cfg, "orm", pool="product")
  step = jax.jit(lambda prm: jax.tree.map(lambda p, g: p - 0.3 * g, prm, jax.grad(lambda q: loss_fn(q, batch)[0])(prm)))
  for _ in range(150):
    params = step(params)
  probs = np.asarray(rewards.reward_model_scores(cfg, params, batch["prompt"], batch["prompt_mask"],
                                                 batch["completion"], batch["mask"], pool="product"))
  rows = np.flatnonzero(wrong)
  before = probs[rows, where[rows] - 1]
  at = probs[rows, where[rows]]
  assert np.mean(before > 0.5) > 0.9 and np.mean(at < 0.5) > 0.9, (before, at)
  assert np.mean(probs[~wrong, -1] > 0.5) > 0.9
