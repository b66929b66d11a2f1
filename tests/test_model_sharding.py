"""Loss and gradients on (data, fsdp, tensor) meshes of 8 simulated CPU devices equal the single-device result, for
the default decoder and for the architecture switches (q/k/v biases, q/k norms, tied embeddings, llama3 RoPE).

The device count must be set before JAX initialises, so the check runs in a subprocess.
"""
import json
import os
import subprocess
import sys
import textwrap

# Pure data parallelism (8, 1, 1) is the RL mesh test's and the sampler's (tests/test_rl_mesh.py,
# tests/test_sample_sharding.py); here fsdp alone, fsdp x tensor and all three axes at once.
MESHES = [(1, 8, 1), (1, 4, 2), (2, 2, 2)]
# The switches of Qwen2.5 + Llama 3.2 (biases, tied head, llama3 RoPE) and of Qwen3 (q/k norms, its own head_dim),
# on the mesh with both fsdp and tensor parallelism (q/k/v biases and q/k norms together are no HF architecture).
SWITCHES = {"qwen2_tied_llama3_rope": {"qkv_bias": True, "tie_embeddings": True, "rope_type": "llama3",
                                       "rope_factor": 8.0, "rope_original_max_positions": 16},
            "qwen3": {"qk_norm": True, "head_dim": 8}}

_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from dsmath import model
    from dsmath.model import sharding

    assert jax.device_count() == 8, jax.devices()

    def check(cfg, shapes, perturb):
      params = jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(0))
      if perturb:  # biases start at 0 and norm scales at 1: move them so every parameter matters
        params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape), params)
      tokens = jax.random.randint(jax.random.key(1), (8, 33), 0, cfg.vocab_size)
      segs = jnp.where(jnp.arange(33) < 20, 1, 2) * jnp.ones((8, 1), jnp.int32)  # two packed documents per row

      def loss(p, tokens, segs):
        lg = model.logits(cfg, p, tokens[:, :-1], segs[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(lg, tokens[:, 1:]).mean()

      ref_loss, ref_grads = jax.jit(jax.value_and_grad(loss))(params, tokens, segs)
      out = {}
      for shape in shapes:
        mesh = sharding.make_mesh(shape)
        ps = sharding.param_shardings(cfg, mesh)
        bs = sharding.batch_sharding(mesh)
        with sharding.activation_rules(mesh):
          f = jax.jit(jax.value_and_grad(loss), in_shardings=(ps, bs, bs),
                      out_shardings=(sharding.replicated(mesh), ps))
          p_sharded = jax.device_put(params, ps)
          l, g = f(p_sharded, jax.device_put(tokens, bs), jax.device_put(segs, bs))
        out[str(tuple(shape))] = {
            "loss_err": abs(float(l - ref_loss)),
            "grad_err": max(float(jnp.abs(a - b).max())
                            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_grads))),
            "grad_scale": max(float(jnp.abs(b).max()) for b in jax.tree.leaves(ref_grads)),
            "q_shard": list(p_sharded["layers"]["attn"]["q"].addressable_shards[0].data.shape),
            "mlp_shard": list(p_sharded["layers"]["mlp"]["down"].addressable_shards[0].data.shape),
            "embed_shard": list(p_sharded["embed"].addressable_shards[0].data.shape),
            "grad_q_spec": str(g["layers"]["attn"]["q"].sharding.spec),
            "q_spec": str(p_sharded["layers"]["attn"]["q"].sharding.spec),
        }
      return out

    # tiny: 4 heads, 2 KV heads: grouped attention under tensor parallelism
    out = {name: check(model.ModelConfig.preset("tiny", **overrides), shapes, perturb=bool(overrides))
           for name, overrides, shapes in json.loads(sys.argv[1])}
    print("RESULT " + json.dumps(out))
""")


def test_meshes_match_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  runs = [("default", {}, MESHES)] + [(name, overrides, [(1, 4, 2)]) for name, overrides in SWITCHES.items()]
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(runs)], env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
  res = json.loads(line[len("RESULT "):])
  # tiny: L=2, hidden 64, 4 heads x 16, 2 KV heads, MLP 172, vocab 512.
  expected_shards = {  # (data, fsdp, tensor) -> q [L,H,N,D], down [L,I,H], embed [V,H] per-device shapes
      (1, 8, 1): [[2, 8, 4, 16], [2, 172, 8], [512, 8]],
      (1, 4, 2): [[2, 16, 2, 16], [2, 86, 16], [256, 16]],
      (2, 2, 2): [[2, 32, 2, 16], [2, 86, 32], [256, 32]],
  }
  for shape in MESHES:
    r = res["default"][str(shape)]
    assert r["loss_err"] < 1e-5, (shape, r)
    assert r["grad_err"] < 1e-6 and r["grad_scale"] > 1e-3, (shape, r)
    assert [r["q_shard"], r["mlp_shard"], r["embed_shard"]] == list(expected_shards[shape]), (shape, r)
    assert r["grad_q_spec"] == r["q_spec"], (shape, r)  # grads come back sharded like the params
  for name in SWITCHES:
    r = res[name][str((1, 4, 2))]
    assert r["loss_err"] < 1e-5 and r["grad_err"] < 1e-6 and r["grad_scale"] > 1e-3, (name, r)
    assert r["grad_q_spec"] == r["q_spec"], (name, r)
