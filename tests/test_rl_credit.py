"""Process credit assignment (dsmath.rl.advantages.CREDIT) and the group-relative process estimator, each against its
paper's formula written out step by step in numpy: the paper's sum form (DeepSeekMath sec. 4.1.3), min form (PURE,
Cheng et al. 2025), clip and delta (Gao et al. 2024); plus the drift the paper's form turns into gradient on
identical outputs."""
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath.rl import advantages as adv_lib
from dsmath.rl.config import AdvantageConfig, PPOConfig


def _layout(step_values, ends, t):
  """Per-row step values and end tokens -> (step_rewards, step_mask, mask) [B, T]; a row's tokens end at its last
  step end (the RL step folds EOS into the last step)."""
  b = len(step_values)
  r, m, mask = np.zeros((b, t), np.float32), np.zeros((b, t), np.float32), np.zeros((b, t), np.float32)
  for i, (vals, es) in enumerate(zip(step_values, ends)):
    r[i, es], m[i, es] = vals, 1.0
    mask[i, :es[-1] + 1] = 1.0
  return r, m, mask


def _returns(vals, credit, eta=0.5):
  """G^k of each step k of one output, straight from each paper's definition."""
  k = len(vals)
  if credit == "sum":  # DeepSeekMath: sum of the rewards of the steps at or after k
    return [sum(vals[j:]) for j in range(k)]
  if credit == "min":  # PURE: V(s_t) = min over future steps
    return [min(vals[j:]) for j in range(k)]
  if credit == "clip":  # Gao et al.: r' = min(r - eta, 0), then the sum
    clipped = [min(v - eta, 0.0) for v in vals]
    return [sum(clipped[j:]) for j in range(k)]
  if credit == "delta":  # Gao et al.: r'_j = r_j - r_{j+1}; here the last step keeps r_K
    d = [vals[j] - vals[j + 1] for j in range(k - 1)] + [vals[-1]]
    return [sum(d[j:]) for j in range(k)]
  raise ValueError(credit)


def _spread(per_step, ends, t):
  """A value per step -> tokens: step k covers the tokens after step k-1's end up to its own end."""
  out = np.zeros(t)
  start = 0
  for v, e in zip(per_step, ends):
    out[start:e + 1] = v
    start = e + 1
  return out


def _paper_reference(step_values, ends, t, g, credit, eps, ddof, eta=0.5):
  out = np.zeros((len(step_values), t))
  for s in range(0, len(step_values), g):
    rows = range(s, s + g)
    flat = [v for i in rows for v in step_values[i]]
    mean = np.mean(flat)
    std = np.sqrt(np.sum((np.array(flat) - mean) ** 2) / max(len(flat) - ddof, 1))
    for i in rows:
      norm = [0.0 if max(flat) == min(flat) else (v - mean) / (std + eps) for v in step_values[i]]
      out[i] = _spread(_returns(norm, credit, eta), ends[i], t)
  return out


def _relative_reference(step_values, ends, t, g, credit, eps, ddof, eta=0.5):
  out = np.zeros((len(step_values), t))
  for s in range(0, len(step_values), g):
    rows = list(range(s, s + g))
    ret = {i: _returns(step_values[i], credit, eta) for i in rows}
    kmax = max(len(step_values[i]) for i in rows)
    centred = {i: [0.0] * len(step_values[i]) for i in rows}
    for k in range(kmax):
      at = [i for i in rows if len(step_values[i]) > k]
      vals = [ret[i][k] for i in at]
      base = np.mean(vals)
      for i in at:
        centred[i][k] = 0.0 if max(vals) == min(vals) else ret[i][k] - base
    flat = [c for i in rows for c in centred[i]]
    std = np.sqrt(np.sum(np.square(flat)) / max(len(flat) - ddof, 1))
    for i in rows:
      out[i] = _spread([c / (std + eps) for c in centred[i]], ends[i], t)
  return out


def _random_batch(seed, b=6, t=12, g=3):
  rng = np.random.default_rng(seed)
  vals, ends = [], []
  for _ in range(b):
    k = int(rng.integers(1, 5))
    es = sorted(rng.choice(np.arange(t), size=k, replace=False).tolist())
    vals.append([float(v) for v in rng.random(k).round(3)])
    ends.append(es)
  return vals, ends, t, g


@pytest.mark.parametrize("credit", sorted(adv_lib.CREDIT))
@pytest.mark.parametrize("seed", [0, 1])
def test_relative_estimator_matches_formula(credit, seed):
  vals, ends, t, g = _random_batch(seed)
  r, m, mask = _layout(vals, ends, t)
  got = adv_lib.grpo_process_relative(jnp.array(r), jnp.array(m), jnp.array(mask), group_size=g, eps=1e-4,
                                      credit=credit, clip_eta=0.4)
  want = _relative_reference(vals, ends, t, g, credit, 1e-4, 1, eta=0.4) * mask
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("credit", sorted(adv_lib.CREDIT))
def test_paper_estimator_with_each_credit_matches_formula(credit):
  vals, ends, t, g = _random_batch(3)
  r, m, mask = _layout(vals, ends, t)
  got = adv_lib.grpo_process(jnp.array(r), jnp.array(m), jnp.array(mask), group_size=g, eps=1e-4, credit=credit,
                             clip_eta=0.4)
  want = _paper_reference(vals, ends, t, g, credit, 1e-4, 1, eta=0.4) * mask
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_drift_on_identical_outputs_paper_form_moves_them_relative_form_does_not():
  """The issue's case: 8 identical right answers whose PRM scores drift down along the solution (0.62, 0.61, 0.60).
  The paper's normalisation over all steps of the group pushes every token down; group-relative credit gives
  exactly zero, whatever the credit form."""
  vals = [[0.62, 0.61, 0.60]] * 8
  ends = [[3, 7, 10]] * 8
  r, m, mask = (jnp.array(x) for x in _layout(vals, ends, 12))
  paper = np.asarray(adv_lib.grpo_process(r, m, mask, group_size=8))
  # normalised over R = 24 values {0.62, 0.61, 0.60} x 8: (+1, 0, -1) / std; the first token sums all three = 0,
  # the second step's tokens -1 / std, the last step's -1 / std: pushed down although nothing differs
  std = np.sqrt(16 * 0.01 ** 2 / 23)
  np.testing.assert_allclose(paper[0, 4:11], -0.01 / (std + 1e-4), rtol=1e-4)
  assert np.all(paper[:, 4:11] < -1.0)
  for credit in adv_lib.CREDIT:
    rel = adv_lib.grpo_process_relative(r, m, mask, group_size=8, credit=credit)
    assert np.all(np.asarray(rel) == 0.0), credit


def test_relative_credit_forms_place_a_wrong_second_step():
  """Two outputs agree on step 1 (0.9) and differ on step 2 (0.9 vs 0.1). Delta credits each step with its own
  reward: step 1's tokens get zero, step 2's the difference. Min and sum credit step 1 with what follows too."""
  vals = [[0.9, 0.9], [0.9, 0.1]]
  ends = [[2, 5], [2, 5]]
  r, m, mask = (jnp.array(x) for x in _layout(vals, ends, 6))
  delta = np.asarray(adv_lib.grpo_process_relative(r, m, mask, group_size=2, credit="delta", eps=0.0))
  assert np.all(delta[:, :3] == 0.0) and np.all(delta[0, 3:] > 0) and np.all(delta[1, 3:] < 0)
  for credit in ("min", "sum"):
    a = np.asarray(adv_lib.grpo_process_relative(r, m, mask, group_size=2, credit=credit, eps=0.0))
    assert np.all(a[0] > 0) and np.all(a[1] < 0), credit


def test_registry_entries_read_the_config():
  vals, ends, t, g = _random_batch(5)
  r, m, mask = _layout(vals, ends, t)
  batch = {"step_rewards": jnp.array(r), "step_mask": jnp.array(m), "mask": jnp.array(mask)}
  cfg = AdvantageConfig(credit="clip", clip_eta=0.3)
  got = adv_lib.ESTIMATORS["grpo_process_relative"].fn(batch, g, cfg, PPOConfig())["advantages"]
  np.testing.assert_allclose(got, _relative_reference(vals, ends, t, g, "clip", 1e-4, 1, eta=0.3) * mask, rtol=2e-5,
                             atol=2e-6)
  got = adv_lib.ESTIMATORS["grpo_process"].fn(batch, g, AdvantageConfig(credit="min"), PPOConfig())["advantages"]
  np.testing.assert_allclose(got, _paper_reference(vals, ends, t, g, "min", 1e-4, 1) * mask, rtol=2e-5, atol=2e-6)
  assert adv_lib.ESTIMATORS["grpo_process_relative"].process


def test_learned_reward_settings_fail_naming_the_key():
  from dsmath.config import ConfigError
  from dsmath.rl.methods import resolve_rl_config
  from tests.rl_configs import config
  with pytest.raises(ConfigError, match=r"config\.advantage\.credit='mean' is unknown"):
    resolve_rl_config(config("grpo_prm_toy", **{"advantage.credit": "mean"}))
  with pytest.raises(ConfigError, match=r"config\.advantage\.credit='min'.*outcome"):
    resolve_rl_config(config("grpo_orm_toy", **{"advantage.credit": "min", "rl.estimator": ""}))
  with pytest.raises(ConfigError, match=r"config\.reward\.verifier_weight=1\.0.*'rule'"):
    resolve_rl_config(config("grpo_toy", **{"reward.verifier_weight": 1.0}))
  with pytest.raises(ConfigError, match=r"config\.reward\.step_drift"):
    resolve_rl_config(config("grpo_orm_toy", **{"reward.step_drift": -0.02, "rl.estimator": ""}))
  with pytest.raises(ConfigError, match=r"config\.reward_model\.label='outcome'.*pool='product'"):
    resolve_rl_config(config("grpo_prm_toy", **{"reward_model.label": "outcome"}))
  resolve_rl_config(config("grpo_prm_toy", **{"reward_model.label": "outcome", "reward_model.pool": "product"}))
  with pytest.raises(ConfigError, match=r"config\.reward_model\.pool"):
    resolve_rl_config(config("grpo_orm_toy", **{"reward_model.pool": "mean"}))
  with pytest.raises(ConfigError, match=r"zero_unanimous_groups"):
    resolve_rl_config(config("ppo_toy", **{"advantage.zero_unanimous_groups": True}))
  run = resolve_rl_config(config("grpo_prm_toy", **{"reward.verifier_weight": 0.5, "rl.estimator":
                                                      "grpo_process_relative", "advantage.credit": "delta"}))
  assert run.estimator == "grpo_process_relative" and run.config.advantage.credit == "delta"


def test_step_ends_fold_eos_into_the_last_step():
  """The last step ends at the completion's last token, EOS included, so the decision to stop shares the last step's
  reward; earlier steps end at their separators."""
  from dsmath.rl import rewards
  text = "7 + 3 = 10\n\\boxed{10}"
  eos = 1
  toks = np.zeros((1, 30), np.int32)
  toks[0, :len(text)] = [ord(c) for c in text]
  toks[0, len(text)] = eos
  decode = lambda ids: "".join(chr(i) for i in ids if i != eos)  # noqa: E731 - EOS decodes to nothing
  ends = rewards.step_ends([text], toks, np.array([len(text) + 1]), decode)
  assert ends == [[10, len(text)]]  # step 1 at its newline, step 2 through EOS


def _pairs_reference(z, y, v, q):
  right = total = 0
  loss = 0.0
  for a in range(len(q)):
    for b in range(len(q)):
      for k in range(z.shape[1]):
        if q[a] == q[b] and v[a, k] and v[b, k] and y[a, k] > y[b, k]:
          total += 1
          right += z[a, k] > z[b, k]
          loss += np.log1p(np.exp(-(z[a, k] - z[b, k])))
  return loss / max(total, 1), right / max(total, 1), total


def test_within_question_pairs_against_a_loop():
  """The reward models' ranking term: pairs of outputs (or of k-th steps) of one question whose labels differ."""
  from dsmath.rl import rewards
  rng = np.random.default_rng(7)
  q = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  z = rng.normal(size=(8, 3)).astype(np.float32)
  y = (rng.random((8, 3)) < 0.5).astype(np.float32)
  v = (rng.random((8, 3)) < 0.8).astype(np.float32)
  loss, right, n = rewards.within_question_pairs(jnp.array(z), jnp.array(y), jnp.array(v), jnp.array(q))
  want = _pairs_reference(z, y, v, q)
  assert float(n) == want[2] > 0
  np.testing.assert_allclose([float(loss), float(right)], want[:2], rtol=1e-5)
  assert rewards.pair_accuracy(z, y, v, q) == pytest.approx(want[1])
  # outcome form: one value per row
  loss1, right1, n1 = rewards.within_question_pairs(jnp.array(z[:, 0]), jnp.array(y[:, 0]), jnp.ones(8), jnp.array(q))
  want1 = _pairs_reference(z[:, :1], y[:, :1], np.ones((8, 1)), q)
  np.testing.assert_allclose([float(loss1), float(right1), float(n1)], want1, rtol=1e-5)
  assert np.isnan(rewards.pair_accuracy(z[:2, 0], np.ones(2), np.ones(2), q[:2]))  # no pair with different labels


def test_per_step_values_gathers_the_kth_step():
  from dsmath.rl import rewards
  x = jnp.array([[0.0, 0.7, 0.0, 0.2], [0.5, 0.0, 0.0, 0.0]])
  sm = jnp.array([[0, 1, 0, 1], [1, 0, 0, 0]], jnp.float32)
  per, has = rewards.per_step_values(x, sm)
  np.testing.assert_allclose(np.asarray(per)[:, :2], [[0.7, 0.2], [0.5, 0.0]])
  np.testing.assert_allclose(np.asarray(has)[:, :3], [[1, 1, 0], [1, 0, 0]])
