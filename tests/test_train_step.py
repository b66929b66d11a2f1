"""Optimizer, schedules, config checking, the loss and the generic train step (in-process, small)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dsmath import model
from dsmath.data.config import PAPER_PRETRAIN_WEIGHTS, load_config_file
from dsmath.paths import REPO_ROOT
from dsmath.config import to_dict
from dsmath.train import (Checkpointer, OptimizerConfig, build_step_fn, decay_mask, flops_per_token, init_state,
                          load_params, make_optimizer, make_train_step, masked_token_mean_nll, multistep_schedule,
                          new_state, next_token_loss, non_embedding_params, resolve_config, save_params)

OPTIMIZER_DEFAULTS = to_dict(OptimizerConfig())


def test_multistep_schedule_is_the_papers():
  total = 100_000
  lr = multistep_schedule(4.2e-4, 2000, total, [0.8, 0.9], [0.316, 0.1])
  expected = {0: 0.0, 1000: 2.1e-4, 2000: 4.2e-4, 50_000: 4.2e-4, 79_999: 4.2e-4, 80_000: 4.2e-4 * 0.316,
              89_999: 4.2e-4 * 0.316, 90_000: 4.2e-5, 99_999: 4.2e-5}
  for step, value in expected.items():
    np.testing.assert_allclose(float(lr(step)), value, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")


def test_pretrain_defaults_and_sft_schedule():
  c = resolve_config(load_config_file(str(REPO_ROOT / "configs/pretrain_7b.py")))
  o = c.optimizer
  assert (o.b1, o.b2, o.weight_decay, o.grad_clip, o.peak_lr, o.warmup_steps) == (0.9, 0.95, 0.1, 1.0, 4.2e-4, 2000)
  assert (o.decay_boundaries, o.decay_factors) == ((0.8, 0.9), (0.316, 0.1))
  weights = {k: s.weight for k, s in c.data.sources.items()}
  assert weights == PAPER_PRETRAIN_WEIGHTS == {"math": 0.56, "algebraic_stack": 0.04, "arxiv": 0.10, "code": 0.20,
                                               "natural_language": 0.10}
  sft = resolve_config(load_config_file(str(REPO_ROOT / "configs/sft_7b.py")))
  _, lr = make_optimizer(sft.optimizer, sft.train.total_steps)
  assert float(lr(0)) == 0.0 and [float(lr(s)) for s in (50, 300, 499)] == pytest.approx([5e-5] * 3)


def test_unknown_config_keys_fail_listing_valid_keys():
  with pytest.raises(KeyError, match=r"\['config.optimizer.lerning_rate'\]; valid keys of config.optimizer: \['b1', "):
    resolve_config({"job": "pretrain", "optimizer": {"lerning_rate": 1e-3}})
  with pytest.raises(KeyError, match=r"\['config.trian'\]; valid keys of config: .*'train'"):
    resolve_config({"job": "pretrain", "trian": {}})
  with pytest.raises(KeyError, match="config.train.total_step"):
    resolve_config({"job": "sft", "train": {"total_step": 3}})
  with pytest.raises(ValueError, match=r"config.job must be one of \['pretrain', 'sft'\], got 'rl'"):
    resolve_config({"job": "rl"})
  cfg = resolve_config(ml_collections.ConfigDict({"job": "sft", "train": {"total_steps": 3}}))
  with pytest.raises(AttributeError):  # frozen: a later assignment fails too
    cfg.train.total_step = 4


def test_weight_decay_mask_skips_norms_and_vectors():
  cfg = model.ModelConfig.preset("tiny")
  params = jax.jit(lambda: model.init_params(cfg, jax.random.key(0)))()
  mask = decay_mask(params, ("norm",))
  assert mask["embed"] and mask["lm_head"] and mask["layers"]["mlp"]["down"] and mask["layers"]["attn"]["q"]
  assert not mask["final_norm"]["scale"] and not mask["layers"]["attn_norm"]["scale"]
  # With zero gradients AdamW only decays: p <- p - lr * wd * p on masked leaves, untouched elsewhere.
  c = resolve_config({"job": "sft", "optimizer": {"schedule": "constant", "warmup_steps": 0, "peak_lr": 0.5}})
  opt, _ = make_optimizer(c.optimizer, 10)
  new = jax.jit(lambda p: optax.apply_updates(p, opt.update(jax.tree.map(jnp.zeros_like, p), opt.init(p), p)[0]))(
      params)
  np.testing.assert_allclose(new["embed"], params["embed"] * (1 - 0.5 * 0.1), rtol=1e-6)
  np.testing.assert_array_equal(new["final_norm"]["scale"], params["final_norm"]["scale"])


def test_masked_token_mean_nll_matches_a_numpy_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, (2, 5))
  mask = (rng.random((2, 5)) > 0.4).astype(np.float32)
  loss, metrics = masked_token_mean_nll(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1,
                                                                                                          keepdims=True)
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(loss), (nll * mask).sum() / mask.sum(), rtol=1e-6)
  assert float(metrics["loss_weight"]) == mask.sum()


def _batch(rng, b=4, t=16, vocab=512):
  x = rng.integers(0, vocab, (b, t + 1)).astype(np.int32)
  seg = np.ones((b, t), np.int32)
  seg[:, t // 2:] = 2  # two packed documents a row
  pos = np.concatenate([np.arange(t // 2), np.arange(t - t // 2)]).astype(np.int32)
  return {"inputs": x[:, :-1], "targets": x[:, 1:], "segment_ids": seg, "positions": np.tile(pos, (b, 1)),
          "loss_mask": (rng.random((b, t)) > 0.3).astype(np.float32)}


def test_gradient_accumulation_equals_one_big_batch_and_state_is_donated():
  cfg = model.ModelConfig.preset("tiny", num_layers=1)
  c = resolve_config({"job": "pretrain", "optimizer": {"warmup_steps": 1}})
  opt, _ = make_optimizer(c.optimizer, 10)
  batches = [_batch(np.random.default_rng(i)) for i in range(2)]
  results = []
  for accum in (1, 2):
    step = make_train_step(cfg, opt, next_token_loss(cfg), grad_accum_steps=accum)
    state = new_state(step, cfg, opt, seed=0)
    losses = []
    for b in batches:
      old = state
      state, m = step(state, step.shard_batch(b))
      losses.append(float(m["loss"]))
      assert jax.tree.leaves(old["params"])[0].is_deleted()  # donated
    results.append((losses, state["params"]))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_nonfinite_loss_skips_the_update_and_is_reported():
  """A generic loss (the step is loss-agnostic): an inf in the batch makes the loss inf."""
  def loss_fn(params, batch, rng):
    del rng
    return jnp.mean((params["w"] * batch["x"] - batch["y"]) ** 2), {}

  opt = optax.adamw(0.1)
  step_fn = jax.jit(build_step_fn(opt, loss_fn))
  state = init_state({"w": jnp.ones((3,))}, opt, seed=0)
  good = {"x": jnp.ones((3,)), "y": jnp.zeros((3,))}
  bad = {"x": jnp.array([1.0, jnp.inf, 1.0]), "y": jnp.zeros((3,))}
  s1, m1 = step_fn(state, bad)
  assert int(m1["skipped"]) == 1 and not np.isfinite(float(m1["loss"]))
  assert int(s1["num_skipped"]) == 1 and int(s1["step"]) == 1
  for a, b in zip(jax.tree.leaves((state["params"], state["opt_state"])), jax.tree.leaves((s1["params"],
                                                                                             s1["opt_state"]))):
    np.testing.assert_array_equal(a, b)
  s2, m2 = step_fn(s1, good)
  assert int(m2["skipped"]) == 0 and float(s2["params"]["w"][0]) < 1.0


@pytest.mark.parametrize("key,value,message", [
    ("peak_lr", float("nan"), r"config\.optimizer\.peak_lr must be a finite number, got nan"),
    ("peak_lr", float("inf"), r"config\.optimizer\.peak_lr must be a finite number, got inf"),
    ("peak_lr", -1e-3, r"config\.optimizer: peak_lr must be > 0, got -0\.001"),
    ("b1", 1.0, r"config\.optimizer: b1 and b2 must be in \[0, 1\), got 1\.0"),
    ("b2", float("-inf"), r"config\.optimizer\.b2 must be a finite number, got -inf"),
    ("eps", float("nan"), r"config\.optimizer\.eps must be a finite number"),
    ("weight_decay", -0.1, r"config\.optimizer: .*weight_decay.*-0\.1"),
    ("grad_clip", float("inf"), r"config\.optimizer\.grad_clip must be a finite number, got inf"),
    ("final_lr_fraction", float("nan"), r"config\.optimizer\.final_lr_fraction must be a finite number"),
    ("decay_factors", [0.316, float("nan")], r"config\.optimizer\.decay_factors\[1\] must be a finite number"),
    ("decay_boundaries", [0.8, 1.5], r"config\.optimizer: decay_boundaries\[1\]=1\.5 must be in \[0, 1\]"),
    ("warmup_steps", 2.5, r"config\.optimizer\.warmup_steps must be int, got float 2\.5"),
    ("peak_lr", "fast", r"config\.optimizer\.peak_lr must be float, got str 'fast'"),
])
def test_make_optimizer_rejects_nonfinite_and_out_of_range_hyperparameters(key, value, message):
  with pytest.raises(ValueError, match=message):
    make_optimizer({**OPTIMIZER_DEFAULTS, key: value}, 10)
  make_optimizer({**OPTIMIZER_DEFAULTS, "peak_lr": 1e-9, "b1": 0.0, "weight_decay": 0.0, "grad_clip": 0.0}, 10)


def test_make_optimizer_checks_a_config_dataclass_too():
  """Another frozen dataclass with the same fields (a mapping too) is checked against OptimizerConfig the same way."""
  import dataclasses
  fields = [(k, object, dataclasses.field(default=tuple(v) if isinstance(v, list) else v))
            for k, v in OPTIMIZER_DEFAULTS.items()]
  Opt = dataclasses.make_dataclass("Opt", fields, frozen=True)
  _, lr = make_optimizer(Opt(schedule="constant", warmup_steps=0, peak_lr=1e-3), 10)
  assert float(lr(5)) == pytest.approx(1e-3)
  with pytest.raises(ValueError, match=r"config\.optimizer\.peak_lr must be a finite number, got nan"):
    make_optimizer(Opt(peak_lr=float("nan")), 10)


def _quadratic_loss(params, batch, rng):
  del rng
  return jnp.mean((params["w"] * batch["x"] - batch["y"]) ** 2), {}


@pytest.mark.parametrize("opt", [optax.adamw(float("nan")),  # what optimizer.peak_lr = nan used to build
                                 optax.sgd(1e38)],  # finite lr * finite gradient (~1e10) overflows to -inf
                         ids=["nan_lr", "overflow"])
def test_a_nonfinite_update_from_a_finite_loss_and_gradient_is_skipped(opt):
  step_fn = jax.jit(build_step_fn(opt, _quadratic_loss))
  state = init_state({"w": jnp.ones((3,))}, opt, seed=0)
  before = jax.tree.map(np.asarray, (state["params"], state["opt_state"]))
  batch = {"x": jnp.full((3,), 1e5), "y": jnp.zeros((3,))}
  s1, m1 = step_fn(state, batch)
  assert np.isfinite(float(m1["loss"])) and np.isfinite(float(m1["grad_norm"]))
  assert int(m1["skipped"]) == 1 and int(s1["num_skipped"]) == 1 and int(s1["step"]) == 1
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves((s1["params"], s1["opt_state"]))):
    np.testing.assert_array_equal(a, b)
  # The same optimizer with a sane step size on the same batch applies its update.
  sane = optax.sgd(1e-12)
  s2, m2 = jax.jit(build_step_fn(sane, _quadratic_loss))(init_state({"w": jnp.ones((3,))}, sane, seed=0), batch)
  # d/dw mean((w x)^2) = 2 w x^2 / 3 per coordinate at w = 1, x = 1e5: one SGD step lands at 1 - 1e-12 * 2e10 / 3
  assert int(m2["skipped"]) == 0
  np.testing.assert_allclose(np.asarray(s2["params"]["w"]), 1.0 - 1e-12 * 2e10 / 3, rtol=1e-6)


def test_nonfinite_params_are_never_checkpointed(tmp_path):
  """Checkpointer.save (asynchronous, as the loop uses it) and save_params refuse NaN/inf params before writing:
  the previous checkpoint stays the latest and restores finite."""
  opt = optax.adamw(1e-3)
  params = {"embed": jnp.ones((4, 2)), "layers": {"mlp": {"down": jnp.ones((2, 2)), "up": jnp.ones((2, 2))}}}
  ckpt = Checkpointer(tmp_path / "ckpt", keep=3, async_save=True)
  ckpt.save(1, init_state(params, opt, seed=0), {"pos": 1})
  bad = {**params, "layers": {"mlp": {"down": jnp.ones((2, 2)), "up": jnp.array([[1.0, jnp.nan], [1.0, jnp.inf]])}}}
  with pytest.raises(FloatingPointError, match=r"step 2: params contain NaN/inf, first at 'layers/mlp/up'"):
    ckpt.save(2, init_state(bad, opt, seed=0), {"pos": 2})
  ckpt.wait()
  assert ckpt.all_steps() == [1] and ckpt.latest_step() == 1
  assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["1"]  # no tmp dir of step 2 either
  ckpt.close()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  restored = load_params(tmp_path / "ckpt", abstract)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored))

  run_dir = tmp_path / "run"
  save_params(run_dir, 5, params)
  with pytest.raises(FloatingPointError, match=r"step 6: params contain NaN/inf, first at 'embed'"):
    save_params(run_dir, 6, {**params, "embed": jnp.full((4, 2), jnp.inf)})
  assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["5"]
  np.testing.assert_array_equal(load_params(run_dir, abstract)["embed"], np.ones((4, 2)))


def test_flops_accounting():
  cfg = model.ModelConfig.preset("7b")
  assert non_embedding_params(cfg) == 6_910_365_696 - 102_400 * 4096  # the known 7B count minus the input embedding
  assert flops_per_token(cfg, 4096) == 6 * non_embedding_params(cfg) + 12 * 30 * 4096 * 4096
