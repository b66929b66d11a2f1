"""Core decoder behaviour: packing isolation, KV cache, dtype policy, remat, parameter count, config validation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dsmath import model
from dsmath.model.config import ModelConfig

CFG = model.ModelConfig.preset("tiny")  # 4 heads over 2 KV heads: grouped attention is exercised throughout


@pytest.fixture(scope="module")
def params():
  def init(rng):
    p = model.init_params(CFG, rng)
    # Random norm scales so every parameter matters.
    return jax.tree.map_with_path(
        lambda path, x: x * (1 + 0.3 * jax.random.normal(jax.random.key(len(path)), x.shape))
        if "scale" in jax.tree_util.keystr(path) else x, p)
  return jax.jit(init)(jax.random.key(0))


_logits = jax.jit(model.logits, static_argnums=0)


def _rand_tokens(seed, shape):
  return np.random.RandomState(seed).randint(1, CFG.vocab_size, shape)


def test_packed_segments_are_isolated(params):
  lengths = [5, 9, 4, 6]  # the last document is followed by 0-segment padding
  docs = [_rand_tokens(i, (n,)) for i, n in enumerate(lengths)]
  row = np.concatenate(docs + [np.zeros(8, int)])[None]
  seg = np.concatenate([np.full(n, i + 1) for i, n in enumerate(lengths)] + [np.zeros(8, int)])[None]
  packed = np.asarray(_logits(CFG, params, row, seg))
  # Each document alone, one per batch row; trailing padding (segment 0) cannot reach earlier tokens.
  alone_rows = np.zeros((len(docs), max(lengths)), int)
  alone_seg = np.zeros_like(alone_rows)
  for i, doc in enumerate(docs):
    alone_rows[i, :len(doc)], alone_seg[i, :len(doc)] = doc, 1
  alone = np.asarray(_logits(CFG, params, alone_rows, alone_seg))
  start = 0
  for i, doc in enumerate(docs):
    np.testing.assert_allclose(packed[0, start:start + len(doc)], alone[i, :len(doc)], atol=2e-5, rtol=0)
    start += len(doc)
  assert np.isfinite(packed).all()  # padding rows attend to nothing: still finite
  # And without segment ids the same row is one causal document: the second document's logits change.
  causal = np.asarray(_logits(CFG, params, row))
  assert np.abs(causal[0, 5:14] - packed[0, 5:14]).max() > 1e-3


def test_default_positions_restart_per_segment():
  seg = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0]])
  np.testing.assert_array_equal(model.default_positions(seg, seg), [[0, 1, 2, 0, 1, 0, 0, 1]])


@pytest.mark.parametrize("unrolled", [False, True])
def test_kv_cache_prefill_and_decode_equal_full_forward(params, unrolled):
  """Right-padded prompts of different lengths, then token-by-token decode, vs each full sequence alone; layers
  scanned over stacked params and cache, or unrolled over per-layer ones (`model.decode_params`)."""
  prompt_lens, new = [3, 6], 5
  p_max = max(prompt_lens)
  full = [_rand_tokens(10 + b, (n + new,)) for b, n in enumerate(prompt_lens)]
  prompt = np.zeros((2, p_max), int)
  seg = np.zeros((2, p_max), int)
  for b, n in enumerate(prompt_lens):
    prompt[b, :n], seg[b, :n] = full[b][:n], 1
  pos = np.tile(np.arange(p_max), (2, 1))
  cache = model.init_cache(CFG, 2, p_max + new, unrolled=unrolled)
  decode_params = model.decode_params(CFG, params) if unrolled else params
  step = jax.jit(lambda p, t, pos, s, c, i: model.forward_with_cache(CFG, p, t, pos, s, c, i))
  hidden, cache = step(decode_params, prompt, pos, seg, cache, 0)
  head = jax.jit(model.lm_head, static_argnums=0)
  got = [[np.asarray(head(CFG, decode_params, hidden[b, n - 1]))] for b, n in enumerate(prompt_lens)]
  for i in range(new - 1):
    tok = np.array([[full[b][n + i]] for b, n in enumerate(prompt_lens)])
    tpos = np.array([[n + i] for n in prompt_lens])
    hidden, cache = step(decode_params, tok, tpos, np.ones((2, 1), int), cache, p_max + i)
    for b in range(2):
      got[b].append(np.asarray(head(CFG, decode_params, hidden[b, 0])))
  # References: both full sequences in one batch, right-padded with segment 0.
  rows = np.zeros((2, p_max + new), int)
  rows_seg = np.zeros_like(rows)
  for b, n in enumerate(prompt_lens):
    rows[b, :n + new], rows_seg[b, :n + new] = full[b], 1
  ref_all = np.asarray(_logits(CFG, params, rows, rows_seg))
  for b, n in enumerate(prompt_lens):
    ref = ref_all[b, n - 1:n + new - 1]
    np.testing.assert_allclose(np.stack(got[b]), ref, atol=2e-5, rtol=0)


def test_attention_blocks_leave_logits_and_grads_unchanged(params):
  """Packed rows of 24 tokens: query blocks of 8 (three, above-diagonal ones skipped) vs one dense block."""
  tokens = _rand_tokens(6, (2, 24))
  seg = np.repeat([[1, 2, 3], [1, 1, 2]], 8, axis=1)
  loss = lambda cfg: jax.jit(jax.value_and_grad(
      lambda p: jnp.sum(model.logits(cfg, p, tokens, seg) ** 2) * 1e-3))
  dense, blocked = ModelConfig.preset("tiny", attention_block=0), ModelConfig.preset("tiny", attention_block=8)
  (l0, g0), (l1, g1) = loss(dense)(params), loss(blocked)(params)
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  for a, r in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * float(jnp.abs(r).max()))


def test_bf16_compute_is_close(params):
  cfg16 = ModelConfig.preset("tiny", dtype="bfloat16")
  tokens = _rand_tokens(3, (2, 32))
  ref = np.asarray(_logits(CFG, params, tokens))
  got = _logits(cfg16, params, tokens)
  assert got.dtype == jnp.float32 and jax.eval_shape(lambda p: model.hidden_states(cfg16, p, tokens), params).dtype == jnp.bfloat16
  err = np.abs(np.asarray(got) - ref)
  assert np.isfinite(err).all() and err.max() < 0.05 * np.abs(ref).max() and err.mean() < 0.01 * np.abs(ref).mean() * 5


def _loss(cfg, p, tokens):
  lg = model.logits(cfg, p, tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(lg, tokens[:, 1:]).mean()


def test_remat_policies_give_same_grads(params):
  tokens = _rand_tokens(4, (2, 24))
  ref = jax.jit(jax.grad(lambda p: _loss(CFG, p, tokens)))(params)
  for policy in ("full", "dots", "everything"):
    cfg = ModelConfig.preset("tiny", remat=policy)
    g = jax.jit(jax.grad(lambda p, cfg=cfg: _loss(cfg, p, tokens)))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5, err_msg=policy)


def test_7b_parameter_count_exact():
  cfg = ModelConfig.preset("7b")
  shapes = model.abstract_params(cfg)  # jax.eval_shape underneath: nothing allocated
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
  assert model.count_params(shapes) == cfg.num_params() == 6_910_365_696
  assert shapes["layers"]["mlp"]["gate"].shape == (30, 4096, 11008)
  assert shapes["layers"]["attn"]["q"].shape == (30, 4096, 32, 128)


@pytest.mark.parametrize("name", sorted(model.PRESETS))
def test_presets_count_matches_abstract(name):
  cfg = ModelConfig.preset(name)
  assert model.count_params(model.abstract_params(cfg)) == cfg.num_params()


def test_benchmark_shapes_counts():  # ../shared/BENCHMARK-SHAPES.md
  assert [ModelConfig.preset(n).num_params() for n in ("S", "M", "L")] == [7_358_720, 58_073_600, 217_342_976]


def test_unknown_config_key_lists_valid_keys():
  with pytest.raises(KeyError, match=r"unknown key\(s\) \['config.model.hiden_size'\].*'hidden_size'"):
    ModelConfig.resolve({"preset": "tiny", "hiden_size": 12})
  with pytest.raises(KeyError, match="known presets"):
    ModelConfig.resolve({"preset": "huge"})
  with pytest.raises(ValueError, match=r"config.model.num_layers must be int, got str '3'"):
    ModelConfig.resolve({"preset": "tiny", "num_layers": "3"})
  assert ModelConfig.resolve({"preset": "tiny", "num_layers": 3}).num_layers == 3
  with pytest.raises(ValueError, match="num_kv_heads"):
    ModelConfig(num_heads=32, num_kv_heads=5)
