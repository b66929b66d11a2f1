"""Every method's loss has the gradient of the paper's surrogate (1/|o|) sum_t sg(GC) log pi; values by hand."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model, rl
from dsmath.rl import policy

METHODS = ("sft", "rft", "online_rft", "dpo", "ppo", "grpo", "dapo", "dr_grpo", "gspo")


def _batch(rng, b=6, t=7, spread=0.3, same_old=False):
  """Random per-token log-probs, ragged masks, old/ref log-probs near the current ones (so some ratios clip)."""
  lengths = rng.integers(1, t + 1, b)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  logp = np.log(rng.uniform(0.05, 0.95, (b, t))).astype(np.float32)
  old = logp if same_old else logp + rng.normal(0, spread, (b, t)).astype(np.float32)
  ref = logp + rng.normal(0, spread, (b, t)).astype(np.float32)
  adv = np.repeat(rng.normal(size=(b, 1)), t, 1).astype(np.float32) + rng.normal(0, 0.3, (b, t)).astype(np.float32)
  weights = (np.arange(b) % 2).astype(np.float32)  # RFT's I(o): half the outputs correct
  batch = {"mask": mask, "old_logp": old, "ref_logp": ref, "advantages": adv * mask, "weights": weights}
  return jnp.asarray(logp), {k: jnp.asarray(v) for k, v in batch.items()}


def _check_grad(method, cfg, logp, batch):
  loss_grad = jax.grad(lambda lp: rl.POLICY_LOSSES[method](cfg, lp, batch)[0])(logp)
  sur_grad = jax.grad(lambda lp: -rl.surrogate_objective(method, cfg, lp, batch))(logp)
  np.testing.assert_allclose(loss_grad, sur_grad, rtol=2e-5, atol=1e-7)
  assert float(jnp.abs(loss_grad).sum()) > 0.0  # a vacuous 0 == 0 would prove nothing


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("aggregation", ["sequence", "token", "sequence_sum_norm"])
def test_loss_gradient_equals_surrogate_gradient(method, aggregation):
  if method == "dpo" and aggregation != "sequence":
    pytest.skip("DPO's reduction is per pair, aggregation does not apply")
  cfg = rl.LossConfig(aggregation=aggregation, max_len=7)
  logp, batch = _batch(np.random.default_rng(METHODS.index(method) * 10 + len(aggregation)))
  _check_grad(method, cfg, logp, batch)


def test_dpo_unnormalised_gradient_equals_surrogate_gradient():
  logp, batch = _batch(np.random.default_rng(3))
  _check_grad("dpo", rl.LossConfig(dpo_length_normalize=False, dpo_beta=0.5), logp, batch)


def test_grpo_gc_is_the_papers_at_mu_1():
  """With pi_old = pi_theta (one update per exploration) GC = A + beta * (pi_ref / pi_theta - 1), Eq. 21."""
  logp, batch = _batch(np.random.default_rng(4), same_old=True)
  cfg = rl.LossConfig()
  gc = rl.GRADIENT_COEFFICIENTS["grpo"](cfg, logp, batch)
  want = (batch["advantages"] + 0.04 * (jnp.exp(batch["ref_logp"]) / jnp.exp(logp) - 1.0)) * batch["mask"]
  np.testing.assert_allclose(gc, want, rtol=1e-5, atol=1e-7)
  # and PPO's is the advantage itself (Eq. 18)
  np.testing.assert_allclose(rl.GRADIENT_COEFFICIENTS["ppo"](cfg, logp, batch), batch["advantages"], rtol=1e-6)


def test_clipping_zeroes_the_coefficient():
  logp = jnp.log(jnp.array([[0.5, 0.5]]))
  batch = {"mask": jnp.ones((1, 2)), "old_logp": jnp.log(jnp.array([[0.3, 0.3]])),  # ratio 5/3 > 1.2
           "ref_logp": logp, "advantages": jnp.array([[1.0, -1.0]])}
  gc = rl.GRADIENT_COEFFICIENTS["grpo"](rl.LossConfig(), logp, batch)
  # A > 0 and ratio above 1 + eps: clipped, no gradient; A < 0: the unclipped side rho * A is the min
  np.testing.assert_allclose(gc, [[0.0, -5.0 / 3.0]], rtol=1e-5)
  grad = jax.grad(lambda lp: rl.grpo_loss(rl.LossConfig(), lp, batch)[0])(logp)
  np.testing.assert_allclose(grad, [[0.0, 5.0 / 3.0 / 2.0]], rtol=1e-5)


def _grpo_hand_batch():
  # one group, G = 2; o1 has 2 tokens, o2 has 1
  logp = jnp.log(jnp.array([[0.5, 0.25], [0.8, 1.0]]))
  batch = {"mask": jnp.array([[1.0, 1.0], [1.0, 0.0]]),
           "old_logp": jnp.log(jnp.array([[0.4, 0.25], [0.5, 1.0]])),
           "ref_logp": jnp.log(jnp.array([[0.5, 0.5], [0.4, 1.0]])),
           "advantages": jnp.array([[1.0, 1.0], [-1.0, 0.0]])}
  return logp, batch


def test_grpo_loss_hand_example():
  logp, batch = _grpo_hand_batch()
  kl = lambda ref, pi: ref / pi - math.log(ref / pi) - 1  # noqa: E731
  o1_t0 = min(1.25 * 1.0, 1.2 * 1.0) - 0.04 * kl(0.5, 0.5)  # ratio 0.5/0.4 clipped to 1.2
  o1_t1 = min(1.0, 1.0) - 0.04 * kl(0.5, 0.25)
  o2_t0 = min(1.6 * -1.0, 1.2 * -1.0) - 0.04 * kl(0.4, 0.8)  # A < 0: the unclipped -1.6 is the min
  want_seq = -((o1_t0 + o1_t1) / 2 + o2_t0) / 2
  loss, metrics = rl.grpo_loss(rl.LossConfig(), logp, batch)
  assert abs(float(loss) - want_seq) < 1e-6, (float(loss), want_seq)
  assert abs(want_seq - 0.2569315) < 1e-6
  np.testing.assert_allclose(metrics["clip_fraction"], 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(metrics["kl_ref"], (kl(0.5, 0.5) + kl(0.5, 0.25) + kl(0.4, 0.8)) / 3, rtol=1e-5)
  loss_tok, _ = rl.grpo_loss(rl.LossConfig(aggregation="token"), logp, batch)
  np.testing.assert_allclose(loss_tok, -(o1_t0 + o1_t1 + o2_t0) / 3, rtol=1e-6)
  loss_dr, _ = rl.grpo_loss(rl.LossConfig(aggregation="sequence_sum_norm", max_len=4), logp, batch)
  np.testing.assert_allclose(loss_dr, -((o1_t0 + o1_t1) / 4 + o2_t0 / 4) / 2, rtol=1e-6)
  loss_b0, _ = rl.grpo_loss(rl.LossConfig(beta=0.0), logp, batch)
  np.testing.assert_allclose(loss_b0, -((1.2 + 1.0) / 2 - 1.6) / 2, rtol=1e-6)


def test_rollout_correction_token_tis_and_sequence_mask():
  """Yao et al. 2025: each token's clipped term times min(pi_old / pi_sampler, C) (TIS), or whole outputs dropped
  when prod pi_old / pi_sampler leaves [1/C, C]; written out on the hand batch (beta 0, sequence mean)."""
  logp, batch = _grpo_hand_batch()
  # sampler probabilities of the same tokens: o1 (0.2, 0.25) against pi_old (0.4, 0.25): ratios 2.0, 1.0;
  # o2 0.5 against 0.5: ratio 1.0
  batch = {**batch, "sampler_logp": jnp.log(jnp.array([[0.2, 0.25], [0.5, 1.0]]))}
  terms = [[min(1.25, 1.2), 1.0], [min(1.6 * -1.0, 1.2 * -1.0)]]  # the clipped surrogate per token (beta 0)
  cap = 1.5
  w1 = [min(2.0, cap), 1.0]
  want = -((terms[0][0] * w1[0] + terms[0][1] * w1[1]) / 2 + terms[1][0]) / 2
  loss, metrics = rl.grpo_loss(rl.LossConfig(beta=0.0, tis="token", tis_cap=cap), logp, batch)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(metrics["tis_weight_mean"], (1.5 + 1.0 + 1.0) / 3, rtol=1e-6)
  np.testing.assert_allclose(metrics["tis_capped_fraction"], 1 / 3, rtol=1e-6)
  # o1's sequence ratio 2.0 is outside [1/1.5, 1.5]: dropped; o2's 1.0 kept
  loss, metrics = rl.grpo_loss(rl.LossConfig(beta=0.0, tis="sequence_mask", tis_cap=cap), logp, batch)
  np.testing.assert_allclose(loss, -(0.0 + terms[1][0]) / 2, rtol=1e-6)
  np.testing.assert_allclose(metrics["tis_masked_fraction"], 0.5, rtol=1e-6)
  loss_off, _ = rl.grpo_loss(rl.LossConfig(beta=0.0), logp, batch)
  np.testing.assert_allclose(loss_off, -((1.2 + 1.0) / 2 - 1.6) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match="tis"):
    rl.LossConfig(tis="sequence")


def test_dapo_decoupled_clip_and_token_mean():
  """DAPO Eq. 8: clip(rho, 1 - eps_low, 1 + eps_high), one mean over every token of the group; no KL at beta 0."""
  logp, batch = _grpo_hand_batch()
  cfg = rl.LossConfig(clip_eps=0.2, clip_eps_high=0.28, beta=0.0)
  # o1 t0: ratio 1.25 < 1.28 is not clipped on the high side any more; o2 t0: A < 0, ratio 1.6 -> min is -1.6
  want = -(1.25 * 1.0 + 1.0 * 1.0 + 1.6 * -1.0) / 3
  loss, metrics = rl.dapo_loss(cfg, logp, batch)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  assert "kl_ref" not in metrics and float(metrics["clip_fraction"]) == 0.0
  # the same batch with the symmetric clip of GRPO clips o1's first token at 1.2
  np.testing.assert_allclose(rl.dapo_loss(rl.LossConfig(beta=0.0), logp, batch)[0], -(1.2 + 1.0 - 1.6) / 3,
                             rtol=1e-6)
  # no pi_ref at beta 0: the batch may lack ref_logp entirely
  del batch["ref_logp"]
  np.testing.assert_allclose(rl.dapo_loss(cfg, logp, batch)[0], want, rtol=1e-6)


def test_dr_grpo_constant_normaliser():
  """Dr. GRPO: (1/G) sum_i (1/L) sum_t, L = max_len, whatever the aggregation setting says."""
  logp, batch = _grpo_hand_batch()
  for aggregation in ("sequence", "token"):
    cfg = rl.LossConfig(aggregation=aggregation, max_len=4)
    np.testing.assert_allclose(rl.dr_grpo_loss(cfg, logp, batch)[0],
                               rl.grpo_loss(rl.LossConfig(aggregation="sequence_sum_norm", max_len=4), logp, batch)[0],
                               rtol=1e-6)


def test_gspo_sequence_ratio_against_the_formula():
  """GSPO Eq. 5-7: s_i = exp(mean_t(log pi - log pi_old)), J = (1/G) sum_i min(s_i A_i, clip(s_i) A_i) - beta KL."""
  rng = np.random.default_rng(11)
  logp, batch = _batch(rng, b=6, t=5, spread=0.002)
  adv = np.repeat(rng.normal(size=(6, 1)), 5, 1).astype(np.float32)
  batch["advantages"] = jnp.asarray(adv) * batch["mask"]
  lp, old, ref, m = (np.asarray(batch[k] if k != "lp" else logp, np.float64) for k in ("lp", "old_logp", "ref_logp",
                                                                                         "mask"))
  for eps, eps_high, beta in ((3e-4, 4e-4, 0.0), (3e-4, 4e-4, 0.04), (0.2, 0.2, 0.0)):
    cfg = rl.LossConfig(clip_eps=eps, clip_eps_high=eps_high, beta=beta)
    n = m.sum(1)
    s = np.exp(((lp - old) * m).sum(1) / n)
    a = adv[:, 0]
    obj = np.minimum(s * a, np.clip(s, 1 - eps, 1 + eps_high) * a)
    d = ref - lp
    kl = ((np.exp(d) - d - 1) * m).sum(1) / n
    want = -np.mean(obj - beta * kl)
    np.testing.assert_allclose(rl.gspo_loss(cfg, logp, batch)[0], want, rtol=1e-5, atol=1e-7)
    _check_grad("gspo", cfg, logp, batch)


def test_kl_estimator_non_negative_and_zero_at_equal():
  lp = jnp.log(jnp.linspace(0.01, 1.0, 50))
  ref = jnp.log(jnp.linspace(1.0, 0.01, 50))
  assert float(rl.kl_k3(lp, ref).min()) >= 0.0
  np.testing.assert_allclose(rl.kl_k3(lp, lp), 0.0, atol=1e-7)


@pytest.mark.parametrize("normalise", [True, False])
def test_dpo_closed_form(normalise):
  rng = np.random.default_rng(5)
  logp, batch = _batch(rng, b=8)
  lp, ref, m = (np.asarray(x, np.float64) for x in (logp, batch["ref_logp"], batch["mask"]))
  d = ((lp - ref) * m).sum(1)
  if normalise:
    d = d / m.sum(1)
  z = 0.3 * (d[:4] - d[4:])
  want = np.mean(np.log1p(np.exp(-z)))
  loss, metrics = rl.dpo_loss(rl.LossConfig(dpo_beta=0.3, dpo_length_normalize=normalise), logp, batch)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["reward_accuracy"], np.mean(z > 0))
  # Eq. 14's coefficient: beta * sigmoid(beta * (Delta- - Delta+)), + on chosen, - on rejected
  gc = np.asarray(rl.GRADIENT_COEFFICIENTS["dpo"](rl.LossConfig(dpo_beta=0.3, dpo_length_normalize=True), logp, batch))
  if normalise:
    g = 0.3 / (1 + np.exp(z))
    np.testing.assert_allclose(gc[:4, 0], g, rtol=1e-5)
    np.testing.assert_allclose(gc[4:, 0], -g, rtol=1e-5)


def test_sft_rft_values():
  logp = jnp.log(jnp.array([[0.5, 0.25, 0.9], [0.1, 0.9, 0.9]]))
  mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  want = -((math.log(0.5) + math.log(0.25)) / 2 + math.log(0.1)) / 2
  np.testing.assert_allclose(rl.sft_loss(rl.LossConfig(), logp, {"mask": mask})[0], want, rtol=1e-6)
  rft = rl.sft_loss(rl.LossConfig(), logp, {"mask": mask, "weights": jnp.array([0.0, 1.0])})[0]
  np.testing.assert_allclose(rft, -math.log(0.1) / 2, rtol=1e-6)  # I(o) zeroes the wrong output, still 1/B


def test_ppo_value_loss_hand():
  batch = {"mask": jnp.array([[1.0, 1.0]]), "old_values": jnp.array([[0.0, 1.0]]), "returns": jnp.array([[1.0, 1.0]])}
  values = jnp.array([[0.5, 2.0]])
  # t0: unclipped (0.5-1)^2 = .25, clipped to 0.2: (0.2-1)^2 = .64 -> .64; t1: (2-1)^2 = 1, clip 1.2: .04 -> 1
  loss, metrics = rl.ppo_value_loss(rl.LossConfig(value_clip=0.2), values, batch)
  np.testing.assert_allclose(loss, 0.5 * (0.64 + 1.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(metrics["value_clip_fraction"], 0.5)


def test_loss_config_validates():
  with pytest.raises(ValueError, match="aggregation"):
    rl.LossConfig(aggregation="mean")


@pytest.fixture(scope="module")
def tiny():
  cfg = model.ModelConfig.preset("tiny", num_layers=1, vocab_size=64, hidden_size=32, intermediate_size=64)
  return cfg, jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))


def test_gradients_through_a_real_model_match_the_surrogate(tiny):
  """Same identity w.r.t. the parameters of a tiny dsmath model (log-probs computed by the model)."""
  cfg, params = tiny
  rng = np.random.default_rng(6)
  b, p, c = 4, 3, 5
  prompt = jnp.asarray(rng.integers(1, 64, (b, p)))
  pmask = jnp.asarray(np.array([[0, 1, 1], [1, 1, 1], [0, 0, 1], [1, 1, 1]], np.float32))
  comp = jnp.asarray(rng.integers(1, 64, (b, c)))
  cmask = jnp.asarray((np.arange(c)[None] < np.array([5, 3, 1, 4])[:, None]).astype(np.float32))
  logp0, _ = policy.completion_logprobs(cfg, params, prompt, pmask, comp, cmask)
  _, batch = _batch(rng, b=b, t=c)
  batch.update(mask=cmask, old_logp=logp0 + 0.2 * jnp.asarray(rng.normal(size=(b, c)), jnp.float32),
               ref_logp=logp0 + 0.2 * jnp.asarray(rng.normal(size=(b, c)), jnp.float32),
               advantages=batch["advantages"] * cmask)
  lcfg = rl.LossConfig()

  def logp_of(prm):
    return policy.completion_logprobs(cfg, prm, prompt, pmask, comp, cmask)[0]

  # parameter gradients = vjp of the model's log-probs with each method's d/dlogp (one model compilation); the
  # direct jax.grad of the composed GRPO loss checks that route once.
  logp, vjp = jax.vjp(jax.jit(logp_of), params)
  vjp = jax.jit(vjp)
  direct = jax.jit(jax.grad(lambda q: rl.grpo_loss(lcfg, logp_of(q), batch)[0]))(params)
  for method in METHODS:
    g_loss = vjp(jax.grad(lambda lp: rl.POLICY_LOSSES[method](lcfg, lp, batch)[0])(logp))[0]
    g_sur = vjp(jax.grad(lambda lp: -rl.surrogate_objective(method, lcfg, lp, batch))(logp))[0]
    flat_l, flat_s = jax.tree.leaves(g_loss), jax.tree.leaves(g_sur)
    scale = max(float(jnp.abs(x).max()) for x in flat_l)
    assert scale > 0.0, method
    for a, s in zip(flat_l, flat_s):
      np.testing.assert_allclose(a, s, rtol=1e-4, atol=1e-5 * scale, err_msg=method)
    if method == "grpo":
      for a, d in zip(flat_l, jax.tree.leaves(direct)):
        np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-5 * scale)


def test_logprobs_independent_of_padding(tiny):
  cfg, params = tiny
  prompt, comp = jnp.array([[5, 6, 7]]), jnp.array([[8, 9]])
  logprobs = jax.jit(policy.completion_logprobs, static_argnums=0)
  lp1, _ = logprobs(cfg, params, prompt, jnp.ones((1, 3)), comp, jnp.ones((1, 2)))
  lp2, _ = logprobs(cfg, params, jnp.array([[0, 0, 5, 6, 7]]), jnp.array([[0, 0, 1, 1, 1.0]]),
                                      jnp.array([[8, 9, 0]]), jnp.array([[1, 1, 0.0]]))
  np.testing.assert_allclose(lp1, lp2[:, :2], rtol=1e-5, atol=1e-6)
  # against a plain forward pass without padding
  logits = jax.jit(model.logits, static_argnums=0)(cfg, params, jnp.array([[5, 6, 7, 8]]))
  want = jax.nn.log_softmax(logits[0, 2:4], -1)[jnp.arange(2), jnp.array([8, 9])]
  np.testing.assert_allclose(lp1[0], want, rtol=1e-5, atol=1e-6)
