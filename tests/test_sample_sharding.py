"""generate on an 8-device (data, fsdp, tensor) mesh with params sharded as in training equals one device, for the
static engine and for continuous batching (4 data-parallel groups, each with its own slots, queue and prompt bank).

Runs in a subprocess: XLA_FLAGS must be set before jax is imported, and the default test process has one device.
"""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from dsmath import model
    from dsmath.model import sharding
    from dsmath.sample import Temperature, generate
    assert jax.device_count() == 8, jax.devices()
    cfg = model.ModelConfig.preset("tiny")
    params = model.init_params(cfg, jax.random.key(0))
    prompts = [[5, 17, 33, 2, 9], [44], [300, 301, 302, 303, 304, 305, 306, 307, 308]]  # 3 prompts: padded to 4
    single = generate(cfg, params, prompts, max_new_tokens=8, num_samples=2)
    single_t = generate(cfg, params, prompts, max_new_tokens=8, num_samples=2, strategy=Temperature(1.0),
                        rng=jax.random.key(3))
    mesh = sharding.make_mesh((2, 2, 2))
    rules = sharding.DEFAULT_RULES
    ps = sharding.param_shardings(cfg, mesh, rules)
    sharded = jax.device_put(params, ps)
    assert sharded["layers"]["mlp"]["up"].sharding.spec == ps["layers"]["mlp"]["up"].spec
    assert len(sharded["layers"]["mlp"]["up"].sharding.device_set) == 8
    multi = generate(cfg, sharded, prompts, max_new_tokens=8, num_samples=2, mesh=mesh, rules=rules)
    multi_t = generate(cfg, sharded, prompts, max_new_tokens=8, num_samples=2, strategy=Temperature(1.0),
                       rng=jax.random.key(3), mesh=mesh, rules=rules)
    np.testing.assert_array_equal(multi.tokens, single.tokens)
    np.testing.assert_array_equal(multi.lengths, single.lengths)
    np.testing.assert_allclose(multi.model_logprobs, single.model_logprobs, atol=1e-5)
    np.testing.assert_array_equal(multi_t.tokens, single_t.tokens)
    np.testing.assert_allclose(multi_t.logprobs, single_t.logprobs, atol=1e-5)
    # The accelerator path: stacked params under the layer scan, sharded the same way.
    scanned_t = generate(cfg, sharded, prompts, max_new_tokens=8, num_samples=2, strategy=Temperature(1.0),
                         rng=jax.random.key(3), mesh=mesh, rules=rules, unroll_layers=False)
    np.testing.assert_array_equal(scanned_t.tokens, single_t.tokens)
    np.testing.assert_allclose(scanned_t.logprobs, single_t.logprobs, atol=1e-5)
    # Continuous batching: rows end early (EOS ids drawn by the static run), groups refill their own slots.
    eos = sorted({int(t) for t in single_t.tokens[:, 3]})
    static_eos = generate(cfg, params, prompts, max_new_tokens=8, num_samples=2, strategy=Temperature(1.0),
                          rng=jax.random.key(3), eos_id=eos, batching="static")
    assert static_eos.lengths.min() < 8
    for unroll in (True, False):
      cont = generate(cfg, sharded, prompts, max_new_tokens=8, num_samples=2, strategy=Temperature(1.0),
                      rng=jax.random.key(3), eos_id=eos, mesh=mesh, rules=rules, batching="continuous", slots=4,
                      unroll_layers=unroll)
      np.testing.assert_array_equal(cont.tokens, static_eos.tokens)
      np.testing.assert_array_equal(cont.lengths, static_eos.lengths)
      assert cont.finish_reasons == static_eos.finish_reasons
      np.testing.assert_allclose(cont.logprobs, static_eos.logprobs, atol=1e-5)
    # One prompt, fewer than the 4 data-parallel groups: its KV rows are copied to every group, prefilled once.
    one = generate(cfg, params, prompts[:1], max_new_tokens=8, num_samples=8, strategy=Temperature(1.0),
                   rng=jax.random.key(3), eos_id=eos, batching="static")
    one_mesh = generate(cfg, sharded, prompts[:1], max_new_tokens=8, num_samples=8, strategy=Temperature(1.0),
                        rng=jax.random.key(3), eos_id=eos, mesh=mesh, rules=rules, batching="continuous", slots=4,
                        unroll_layers=False)
    np.testing.assert_array_equal(one_mesh.tokens, one.tokens)
    np.testing.assert_allclose(one_mesh.model_logprobs, one.model_logprobs, atol=1e-5)
    # params were used in place: still sharded as in training
    assert sharded["layers"]["attn"]["q"].sharding == ps["layers"]["attn"]["q"]
    print("OK", multi.tokens.shape)
''')


def test_sharded_generate_equals_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  assert "OK (6, 8)" in proc.stdout
