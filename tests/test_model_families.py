"""Qwen2 / Qwen2.5, Qwen3 and Llama 3 as switches of the one decoder, against HF transformers' own models.

Tiny random models are built with transformers' config classes (nothing downloaded), saved with save_pretrained,
imported, and compared on packed and padded batches (logits within 1e-4 in float32), by greedy generation (the
tokens of `generate`, both decode layouts) and by an export that transformers loads back. The presets' parameter
counts are checked against the counts transformers computes for the published config.json of each model, built on
the meta device (no memory, nothing downloaded).
"""
import json

import jax
import numpy as np
import pytest
import torch
from transformers import (AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

from dsmath import model
from dsmath.model.config import ModelConfig
from dsmath.sample import Greedy, generate

VOCAB = 96
_LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 100.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
# Each family's distinguishing switches on: Qwen2.5 (q/k/v biases, tied), Qwen3 (q/k norms, head_dim 16 != 48 / 4),
# Llama 3.2 (llama3 RoPE scaling with wavelengths in all three of its bands at theta 100, tied).
FAMILIES = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True, rope_theta=5000.0)),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(head_dim=16, rope_theta=5000.0)),
    "llama3": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, rope_parameters=_LLAMA3_ROPE)),
}


def _hf_model(family: str, seed: int = 0):
  config_cls, model_cls, extra = FAMILIES[family]
  torch.manual_seed(seed)
  # initializer_range well above HF's 0.02 so logits vary enough for the comparison to mean something.
  hf_cfg = config_cls(vocab_size=VOCAB, hidden_size=48, intermediate_size=100, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                      initializer_range=0.2, **extra)
  hf = model_cls(hf_cfg).eval()
  with torch.no_grad():  # norms start at 1 and biases at 0; perturb them so a missing or swapped one would show
    for name, p in hf.named_parameters():
      if "norm" in name or name.endswith("bias"):
        p.add_(0.3 * torch.randn_like(p))
  return hf


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def imported(request, tmp_path_factory):
  """(family, HF model, its checkpoint directory, our config, our params)."""
  hf = _hf_model(request.param)
  path = tmp_path_factory.mktemp(request.param)
  hf.save_pretrained(path)
  cfg, params = model.from_hf(str(path))
  return request.param, hf, path, cfg, params


def _torch_logits(hf, tokens, attention_mask=None):
  with torch.no_grad():
    mask = None if attention_mask is None else torch.tensor(attention_mask)
    return hf(torch.tensor(tokens), attention_mask=mask).logits.float().numpy()


_logits = jax.jit(model.logits, static_argnums=0)


def _docs(lengths, seed=1):
  rs = np.random.RandomState(seed)
  return [rs.randint(0, VOCAB, n) for n in lengths]


def test_import_reads_the_switches(imported):
  family, hf, _, cfg, params = imported
  hc = hf.config
  want = {"qwen2": dict(qkv_bias=True, qk_norm=False, tie_embeddings=True, rope_type="default", head_dim=12),
          "qwen3": dict(qkv_bias=False, qk_norm=True, tie_embeddings=False, rope_type="default", head_dim=16),
          "llama3": dict(qkv_bias=False, qk_norm=False, tie_embeddings=True, rope_type="llama3", head_dim=12)}[family]
  assert {k: getattr(cfg, k) for k in want} == want
  assert cfg.family == {"llama3": "llama"}.get(family, family)
  assert cfg.rms_norm_eps == 1e-5 and cfg.max_positions == 128
  if family == "llama3":
    assert (cfg.rope_theta, cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
            cfg.rope_original_max_positions) == (100.0, 8.0, 1.0, 4.0, 32)
  assert ("lm_head" in params) == (not hc.tie_word_embeddings)
  assert model.count_params(params) == cfg.num_params() == sum(p.numel() for p in hf.parameters())


def test_packed_and_padded_logits_match_transformers(imported):
  _, hf, _, cfg, params = imported
  lengths = [7, 30, 11, 50]
  docs = _docs(lengths)
  alone = [_torch_logits(hf, d[None])[0] for d in docs]  # the reference: each document by itself
  # Packed: the four documents in one row of 112 tokens (segment ids 1..4), 14 padding tokens after them.
  row = np.concatenate(docs + [np.zeros(14, int)])[None]
  seg = np.concatenate([np.full(n, i + 1) for i, n in enumerate(lengths)] + [np.zeros(14, int)])[None]
  packed = np.asarray(_logits(cfg, params, row, seg))[0]
  start = 0
  for doc, ref in zip(docs, alone):
    np.testing.assert_allclose(packed[start:start + len(doc)], ref, atol=1e-4, rtol=0)
    start += len(doc)
  # Padded: one document a row, right-padded with segment 0; transformers gets the same batch with its mask.
  batch = np.zeros((len(docs), max(lengths)), int)
  mask = np.zeros_like(batch)
  for i, doc in enumerate(docs):
    batch[i, :len(doc)], mask[i, :len(doc)] = doc, 1
  ours = np.asarray(_logits(cfg, params, batch, mask))
  theirs = _torch_logits(hf, batch, mask)
  for i, (doc, ref) in enumerate(zip(docs, alone)):
    np.testing.assert_allclose(ours[i, :len(doc)], ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[i, :len(doc)], theirs[i, :len(doc)], atol=1e-4, rtol=0)


@pytest.mark.parametrize("unroll", [False, True], ids=["scanned", "unrolled"])
def test_greedy_generation_equals_transformers_generate(imported, unroll):
  """Prefill and KV-cache decode over both parameter layouts (the unrolled one joins q/k/v and their biases)."""
  _, hf, _, cfg, params = imported
  prompts = [d.tolist() for d in _docs([5, 17, 9], seed=7)]
  new = 24
  out = generate(cfg, params, prompts, max_new_tokens=new, strategy=Greedy(), eos_id=None, unroll_layers=unroll)
  hf.generation_config.eos_token_id = None
  for i, prompt in enumerate(prompts):
    ids = torch.tensor([prompt])
    with torch.no_grad():  # an explicit mask: generate would otherwise mask prompt tokens equal to pad_token_id
      ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                        pad_token_id=0)[0, len(prompt):]
    assert out.tokens[i].tolist() == ref.tolist()


def test_export_loads_in_transformers_with_the_same_logits(imported, tmp_path):
  family, hf, _, cfg, params = imported
  model.to_hf(cfg, params, str(tmp_path), max_shard_size="30KB")  # several shards
  written = json.loads((tmp_path / "config.json").read_text())
  assert written["architectures"] == [type(hf).__name__]
  loaded, info = AutoModelForCausalLM.from_pretrained(str(tmp_path), output_loading_info=True)
  assert type(loaded) is type(hf)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  assert loaded.config.tie_word_embeddings == hf.config.tie_word_embeddings
  tokens = np.stack(_docs([40, 40], seed=3))
  np.testing.assert_allclose(_torch_logits(loaded.eval(), tokens), np.asarray(_logits(cfg, params, tokens)),
                             atol=1e-4, rtol=0)
  cfg2, params2 = model.from_hf(str(tmp_path))
  assert cfg2 == cfg
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_tied_checkpoint_that_saves_its_head_imports_if_the_head_is_the_embedding(tmp_path):
  """Qwen3-0.6B / 1.7B ship lm_head.weight although tie_word_embeddings is true."""
  from safetensors.numpy import load_file, save_file
  hf = _hf_model("qwen2")
  hf.save_pretrained(tmp_path)
  tensors = load_file(tmp_path / "model.safetensors")
  assert "lm_head.weight" not in tensors
  tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
  save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
  cfg, params = model.from_hf(str(tmp_path))
  assert cfg.tie_embeddings and "lm_head" not in params
  tensors["lm_head.weight"][0, 0] += 1.0
  save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(ValueError, match=r"model.safetensors: tensor 'lm_head.weight' differs from the embedding.*"
                                       r"config.json says tie_word_embeddings=true"):
    model.from_hf(str(tmp_path))


@pytest.mark.parametrize("family, changes, match", [
    ("qwen2", {"use_sliding_window": True, "sliding_window": 16}, "use_sliding_window=True"),
    ("qwen3", {"layer_types": ["full_attention", "sliding_attention", "full_attention"]}, "layer_types"),
    ("qwen2", {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "num_experts": 4},
     "unsupported architecture.*qwen2_moe"),
    ("qwen3", {"num_experts": 8}, "num_experts=8: mixture-of-experts"),
    ("llama3", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}},
     "rope_parameters.rope_type='yarn'"),
    ("qwen2", {"rope_parameters": None, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
     "rope_scaling.rope_type='dynamic'"),
    ("llama3", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4}},
     "rope_parameters of rope_type 'llama3' lacks 'low_freq_factor'"),
    ("qwen3", {"attention_bias": True}, "attention_bias=True"),
    ("llama3", {"attention_bias": True}, "attention_bias=True"),
    ("qwen3", {"head_dim": 8}, r"q_proj\.weight.*shape \(64, 48\).*expected \(32, 48\)"),
])
def test_unsupported_configs_name_the_key_and_the_file(family, changes, match, tmp_path):
  _hf_model(family).save_pretrained(tmp_path)
  hf_cfg = json.loads((tmp_path / "config.json").read_text())
  hf_cfg.update(changes)
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises((ValueError, KeyError), match=match) as e:
    model.from_hf(str(tmp_path))
  assert str(tmp_path) in str(e.value)


# ------------------------------------------------------------------------------------- presets and the default


# The published config.json of each base (the keys that decide shapes), in the transformers 4.x form the Hub holds.
PUBLISHED: dict = {
    "qwen2.5-math-1.5b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": 1536,
        "intermediate_size": 8960, "max_position_embeddings": 4096, "max_window_layers": 21,
        "num_attention_heads": 12, "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 10000, "sliding_window": 4096, "tie_word_embeddings": True, "use_sliding_window": False,
        "vocab_size": 151936},
    "qwen2.5-math-7b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": 3584,
        "intermediate_size": 18944, "max_position_embeddings": 4096, "max_window_layers": 28,
        "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
        "rope_theta": 10000, "sliding_window": 4096, "tie_word_embeddings": False, "use_sliding_window": False,
        "vocab_size": 152064},
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False, "head_dim": 128,
        "hidden_act": "silu", "hidden_size": 1024, "intermediate_size": 3072, "max_position_embeddings": 40960,
        "max_window_layers": 28, "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
        "tie_word_embeddings": True, "use_sliding_window": False, "vocab_size": 151936},
    "llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "head_dim": 64,
        "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "mlp_bias": False, "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                                "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256},
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "hidden_act": "silu",
        "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "vocab_size": 128256},
    "deepseek-math-7b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 4096,
        "intermediate_size": 11008, "max_position_embeddings": 4096, "num_attention_heads": 32,
        "num_hidden_layers": 30, "num_key_value_heads": 32, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "vocab_size": 102400},
}
PUBLISHED["qwen3-1.7b"] = {**PUBLISHED["qwen3-0.6b"], "hidden_size": 2048, "intermediate_size": 6144}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_are_the_published_shapes_with_transformers_parameter_counts(name, tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(PUBLISHED[name]))
  hf_cfg = AutoConfig.from_pretrained(str(tmp_path))
  with torch.device("meta"):  # shapes only: an 8B model without allocating it
    hf = AutoModelForCausalLM.from_config(hf_cfg)
  assert type(hf).__name__ == PUBLISHED[name]["architectures"][0]
  ours = ModelConfig.preset(name)
  assert model.config_from_hf(PUBLISHED[name]) == ours
  assert ours.num_params() == model.count_params(model.abstract_params(ours)) == sum(p.numel()
                                                                                     for p in hf.parameters())


def test_the_default_params_are_todays_tree():
  """With every switch off, the params are the tree (paths, shapes, dtypes) the decoder always had; each switch
  adds exactly its own parameters."""
  cfg = ModelConfig.preset("tiny")
  assert ModelConfig() == ModelConfig.preset("7b") and cfg.family == "llama"
  shapes = jax.tree.map(lambda x: (x.shape, x.dtype.name), model.abstract_params(cfg))
  f32 = "float32"
  layer = {"attn": {"q": ((2, 64, 4, 16), f32), "k": ((2, 64, 2, 16), f32), "v": ((2, 64, 2, 16), f32),
                    "o": ((2, 4, 16, 64), f32)},
           "attn_norm": {"scale": ((2, 64), f32)}, "mlp_norm": {"scale": ((2, 64), f32)},
           "mlp": {"gate": ((2, 64, 172), f32), "up": ((2, 64, 172), f32), "down": ((2, 172, 64), f32)}}
  assert shapes == {"embed": ((512, 64), f32), "lm_head": ((64, 512), f32), "final_norm": {"scale": ((64,), f32)},
                    "layers": layer}
  paths = lambda c: {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(  # noqa: E731
      model.abstract_params(c))[0]}
  base = paths(cfg)
  assert paths(ModelConfig.preset("tiny", qkv_bias=True)) - base == {
      "['layers']['attn']['q_bias']", "['layers']['attn']['k_bias']", "['layers']['attn']['v_bias']"}
  assert paths(ModelConfig.preset("tiny", qk_norm=True)) - base == {
      "['layers']['attn']['q_norm']['scale']", "['layers']['attn']['k_norm']['scale']"}
  assert base - paths(ModelConfig.preset("tiny", tie_embeddings=True)) == {"['lm_head']"}
  assert paths(ModelConfig.preset("tiny", rope_type="llama3")) == base


def test_switch_config_errors_name_the_key():
  with pytest.raises(ValueError, match="model.rope_type must be one of"):
    ModelConfig.resolve({"preset": "tiny", "rope_type": "yarn"})
  with pytest.raises(ValueError, match="rope_high_freq_factor > rope_low_freq_factor"):
    ModelConfig.preset("tiny", rope_type="llama3", rope_low_freq_factor=4.0)
  with pytest.raises(ValueError, match="qkv_bias and model.qk_norm"):
    ModelConfig.preset("tiny", qkv_bias=True, qk_norm=True)
  with pytest.raises(ValueError, match="config.model.tie_embeddings must be bool"):
    ModelConfig.resolve({"preset": "tiny", "tie_embeddings": "yes"})
  # A preset's own head_dim (Qwen3: 128, not 1024 / 16) stays when the width is overridden.
  assert ModelConfig.resolve({"preset": "qwen3-0.6b", "hidden_size": 512}).head_dim == 128
  assert ModelConfig.resolve({"preset": "tiny", "hidden_size": 128}).head_dim == 32
