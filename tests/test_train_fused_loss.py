"""The fused, chunked LM head + cross-entropy (`lm_head_nll`, used by `next_token_loss`), the chunked per-token
log-probs and entropies (`lm_head_logprobs`, used by RL) and the custom attention backward equal plain autodiff
through the full logits: values and every gradient."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmath import model
from dsmath.model import transformer
from dsmath.train.loss import lm_head_logprobs, lm_head_nll, masked_token_mean_nll, next_token_loss

CFG = model.ModelConfig.preset("tiny")  # 4 heads over 2 KV heads: grouped attention


def _batch(cfg, b=3, t=24, seed=0):
  rng = np.random.RandomState(seed)
  toks = rng.randint(0, cfg.vocab_size, (b, t + 1)).astype(np.int32)
  seg = np.ones((b, t), np.int32)
  seg[0, t // 3:] = 2  # two packed documents
  seg[-1, -5:] = 0  # right padding
  pos = np.asarray(model.default_positions(jnp.asarray(toks[:, :-1]), jnp.asarray(seg)))
  return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "segment_ids": seg, "positions": pos,
          "loss_mask": (seg > 0).astype(np.float32)}


def _reference_loss(cfg):
  def loss_fn(params, batch, rng):
    del rng
    lg = model.logits(cfg, params, batch["inputs"], batch["segment_ids"], batch["positions"])
    return masked_token_mean_nll(lg, batch["targets"], batch["loss_mask"])
  return loss_fn


def _reference_attention(q, k, v, mask):  # the textbook form, differentiated by JAX itself
  scores = jnp.einsum("btkgd,bskd->bkgts", q, k) * q.shape[-1] ** -0.5
  probs = jax.nn.softmax(jnp.where(mask[:, None, None], scores, -1e30), axis=-1)
  return jnp.einsum("bkgts,bskd->btkgd", probs, v)


@pytest.mark.parametrize("chunk_rows", [1, 16, 10_000])  # one token per chunk, several chunks, one chunk
def test_lm_head_nll_equals_full_logits_loss_with_grads(chunk_rows):
  params = model.init_params(CFG, jax.random.key(0))
  b, t = 3, 24
  hidden = jax.random.normal(jax.random.key(1), (b, t, CFG.hidden_size))
  logits = model.lm_head(CFG, params, hidden)
  rng = np.random.RandomState(1)
  # half the targets are the argmax, so accuracy is neither 0 nor 1
  targets = np.where(rng.rand(b, t) < 0.5, np.asarray(jnp.argmax(logits, -1)),
                     rng.randint(0, CFG.vocab_size, (b, t))).astype(np.int32)
  mask = (rng.rand(b, t) < 0.8).astype(np.float32)

  def fused(h, w, m):
    return lm_head_nll(CFG, dict(params, lm_head=w), h, targets, m, chunk_rows=chunk_rows)

  def plain(h, w, m):
    return masked_token_mean_nll(model.lm_head(CFG, dict(params, lm_head=w), h), targets, m)

  args = (hidden, params["lm_head"], jnp.asarray(mask))
  (l1, m1), g1 = jax.value_and_grad(fused, argnums=(0, 1, 2), has_aux=True)(*args)
  (l0, m0), g0 = jax.value_and_grad(plain, argnums=(0, 1, 2), has_aux=True)(*args)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  assert 0.0 < float(m0["accuracy"]) < 1.0
  np.testing.assert_allclose(m1["accuracy"], m0["accuracy"], rtol=1e-6)
  assert float(m1["loss_weight"]) == float(m0["loss_weight"]) == mask.sum()
  for a, r in zip(g1, g0):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-6 * float(jnp.abs(r).max()))
  # without differentiation (the custom_vjp's primal path) the values agree too
  l2, m2 = jax.jit(fused)(*args)
  np.testing.assert_allclose(l2, l0, rtol=1e-6)
  np.testing.assert_allclose(m2["accuracy"], m0["accuracy"], rtol=1e-6)


@pytest.mark.parametrize("chunk_rows,temperature", [(1, 1.0), (16, 0.7), (10_000, 1.3)])
def test_lm_head_logprobs_equal_log_softmax_with_grads(chunk_rows, temperature):
  """Both outputs carry gradients: a loss mixing log-probs and entropies with random weights differentiates alike."""
  params = model.init_params(CFG, jax.random.key(0))
  b, t = 3, 24
  hidden = jax.random.normal(jax.random.key(1), (b, t, CFG.hidden_size))
  targets = jax.random.randint(jax.random.key(2), (b, t), 0, CFG.vocab_size)
  g_logp, g_ent = jax.random.normal(jax.random.key(3), (2, b, t))

  def plain(h, w):
    logz = jax.nn.log_softmax(model.lm_head(CFG, dict(params, lm_head=w), h) / temperature, axis=-1)
    return jnp.take_along_axis(logz, targets[..., None], axis=-1)[..., 0], -jnp.sum(jnp.exp(logz) * logz, axis=-1)

  def chunked(h, w):
    return lm_head_logprobs(CFG, dict(params, lm_head=w), h, targets, temperature, chunk_rows=chunk_rows)

  def mixed(fn):
    return jax.value_and_grad(lambda h, w: sum(jnp.sum(o * g) for o, g in zip(fn(h, w), (g_logp, g_ent))),
                              argnums=(0, 1))

  args = (hidden, params["lm_head"])
  for got, want in zip(jax.jit(chunked)(*args), plain(*args)):
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
  (v1, g1), (v0, g0) = jax.jit(mixed(chunked))(*args), mixed(plain)(*args)
  np.testing.assert_allclose(v1, v0, rtol=1e-5)
  for a, r in zip(g1, g0):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * float(jnp.abs(r).max()))


def test_accuracy_breaks_ties_like_argmax():
  """All-equal logits (a zero head): argmax picks index 0, so only targets equal to 0 count as correct."""
  params = model.init_params(CFG, jax.random.key(0))
  params = dict(params, lm_head=jnp.zeros_like(params["lm_head"]))
  hidden = jnp.ones((1, 4, CFG.hidden_size))
  targets = jnp.asarray([[0, 3, 0, 7]], jnp.int32)
  _, metrics = lm_head_nll(CFG, params, hidden, targets, jnp.ones((1, 4)))
  np.testing.assert_allclose(metrics["accuracy"], 0.5)


def _qkv(seed: int):
  """q [2, 7, 2 KV heads, 2 groups, 8], k, v [2, 7, 2, 8]."""
  kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
  b, t, kvh, g, d = 2, 7, 2, 2, 8
  return (jax.random.normal(kq, (b, t, kvh, g, d)), jax.random.normal(kk, (b, t, kvh, d)),
          jax.random.normal(kv, (b, t, kvh, d)))


def test_masked_attention_grads_equal_autodiff_including_empty_rows():
  q, k, v = _qkv(2)
  seg = jnp.asarray([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
  pos = jnp.asarray([[0, 1, 2, 0, 1, 0, 1], [3, 4, 5, 6, 0, 1, 2]])  # row 1: queries that see nothing but themselves
  mask = transformer.attention_mask(seg, pos, seg, pos).at[1, 4].set(False)  # and one query that sees nothing
  cot = jax.random.normal(jax.random.key(3), q.shape)
  out, vjp = jax.vjp(lambda *a: transformer.masked_attention(*a, mask), q, k, v)
  ref, ref_vjp = jax.vjp(lambda *a: _reference_attention(*a, mask), q, k, v)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  for a, r in zip(vjp(cot), ref_vjp(cot)):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("block", [1, 3, 4, 7])
def test_causal_block_attention_equals_dense_with_grads(block):
  """Query blocks skip the keys after them: same outputs and gradients as the dense reference on an index-causal
  packed mask (blocks of 1, a partial last block, exactly one block)."""
  q, k, v = _qkv(4)
  t = q.shape[1]
  seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1]])
  pos = jnp.asarray([[0, 1, 2, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5, 6]])
  mask = transformer.attention_mask(seg, pos, seg, pos) & jnp.tri(t, dtype=bool)[None]
  cot = jax.random.normal(jax.random.key(5), q.shape)
  out, vjp = jax.vjp(lambda *a: transformer.causal_attention(*a, mask, block), q, k, v)
  ref, ref_vjp = jax.vjp(lambda *a: _reference_attention(*a, mask), q, k, v)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  for a, r in zip(vjp(cot), ref_vjp(cot)):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


def test_next_token_loss_equals_full_logits_loss_with_grads():
  params = model.init_params(CFG, jax.random.key(0))
  batch = _batch(CFG)
  (l1, m1), g1 = jax.jit(jax.value_and_grad(next_token_loss(CFG), has_aux=True))(params, batch, None)
  (l0, m0), g0 = jax.jit(jax.value_and_grad(_reference_loss(CFG), has_aux=True))(params, batch, None)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  np.testing.assert_allclose(m1["accuracy"], m0["accuracy"], rtol=1e-6)
  for a, r in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-6 * float(jnp.abs(r).max()))


_MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from dsmath import model
    from dsmath.model import sharding
    from dsmath.train import next_token_loss
    sys.path.insert(0, sys.argv[2])
    from test_train_fused_loss import CFG, _batch, _reference_loss

    params = model.init_params(CFG, jax.random.key(0))
    batch = _batch(CFG, b=8, t=16)
    ref = jax.jit(jax.value_and_grad(_reference_loss(CFG), has_aux=True))(params, batch, None)
    out = {}
    for shape in json.loads(sys.argv[1]):
      mesh = sharding.make_mesh(shape)
      ps, bs = sharding.param_shardings(CFG, mesh), sharding.batch_sharding(mesh)
      with sharding.activation_rules(mesh):
        f = jax.jit(jax.value_and_grad(next_token_loss(CFG), has_aux=True), in_shardings=(ps, bs, None))
        (l, m), g = f(jax.device_put(params, ps), {k: jax.device_put(v, bs) for k, v in batch.items()}, None)
      out[str(shape)] = [abs(float(l - ref[0][0])), abs(float(m["accuracy"] - ref[0][1]["accuracy"])),
                         max(float(np.abs(a - b).max() / np.abs(b).max())
                             for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref[1])))]
    print("RESULT " + json.dumps(out))
""")


def test_next_token_loss_on_meshes_matches_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _MESH_SCRIPT, json.dumps([[1, 4, 2], [2, 2, 2]]),
                         os.path.dirname(__file__)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  res = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
  for shape, (loss_err, acc_err, grad_err) in res.items():
    assert loss_err < 1e-5 and acc_err < 1e-6 and grad_err < 1e-4, (shape, loss_err, acc_err, grad_err)
