"""HF LlamaForCausalLM interop: import/export against real transformers models built in code (no download). The other
families (Qwen2, Qwen3, Llama 3's RoPE scaling, tied embeddings): tests/test_model_families.py."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from dsmath import model

VOCAB = 96


def _hf_model(kv_heads: int, seed: int = 0) -> LlamaForCausalLM:
  torch.manual_seed(seed)
  # initializer_range well above HF's 0.02 so logits vary enough for the comparison to mean something.
  hf_cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=100, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64,
                       rope_theta=5000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.2)
  hf = LlamaForCausalLM(hf_cfg).eval()
  with torch.no_grad():  # norms start at 1; perturb them so a swapped norm would show
    for name, p in hf.named_parameters():
      if "norm" in name:
        p.add_(0.3 * torch.randn_like(p))
  return hf


def _tokens(b=2, t=20):
  return np.random.RandomState(1).randint(0, VOCAB, (b, t))


def _torch_logits(hf, tokens):
  with torch.no_grad():
    return hf(torch.tensor(tokens)).logits.float().numpy()


@pytest.fixture(scope="module", params=[2, 4], ids=["gqa", "mha"])
def hf_model(request):
  return _hf_model(request.param)


@pytest.mark.parametrize("shard_size", [None, "40KB"], ids=["single", "sharded"])
def test_import_matches_torch(hf_model, shard_size, tmp_path):
  kw = {"max_shard_size": shard_size} if shard_size else {}
  hf_model.save_pretrained(tmp_path, **kw)
  assert os.path.exists(tmp_path / "model.safetensors.index.json") == (shard_size is not None)
  cfg, params = model.from_hf(str(tmp_path))
  hc = hf_model.config
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.num_layers) == (4, hc.num_key_value_heads, 12, 3)
  assert (cfg.rope_theta, cfg.rms_norm_eps, cfg.max_positions) == (5000.0, 1e-5, 64)
  assert model.count_params(params) == cfg.num_params() == sum(p.numel() for p in hf_model.parameters())
  tokens = _tokens()
  np.testing.assert_allclose(np.asarray(model.logits(cfg, params, tokens)), _torch_logits(hf_model, tokens),
                             atol=1e-4, rtol=0)


@pytest.mark.parametrize("shard_size", ["5GB", "30KB"], ids=["single", "sharded"])
def test_export_loads_in_transformers(hf_model, shard_size, tmp_path):
  hf_model.save_pretrained(tmp_path / "src")
  cfg, params = model.from_hf(str(tmp_path / "src"))
  out = tmp_path / "out"
  model.to_hf(cfg, params, str(out), max_shard_size=shard_size)
  shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
  if shard_size == "30KB":
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and set(index["weight_map"].values()) == set(shards)
    assert all(os.path.getsize(out / f) < 30_000 + 1024 for f in shards)  # limit + safetensors header
  else:
    assert shards == ["model.safetensors"] and not os.path.exists(out / "model.safetensors.index.json")
  loaded, info = LlamaForCausalLM.from_pretrained(str(out), output_loading_info=True)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  tokens = _tokens()
  np.testing.assert_allclose(_torch_logits(loaded.eval(), tokens), np.asarray(model.logits(cfg, params, tokens)),
                             atol=1e-4, rtol=0)
  # Our own round trip is exact.
  cfg2, params2 = model.from_hf(str(out))
  assert cfg2 == cfg
  for a, b in zip(np.asarray(params["layers"]["attn"]["o"]), np.asarray(params2["layers"]["attn"]["o"])):
    np.testing.assert_array_equal(a, b)


def test_bf16_checkpoint_and_export(tmp_path):
  hf = _hf_model(2).to(torch.bfloat16)
  hf.save_pretrained(tmp_path / "bf16")
  cfg, params = model.from_hf(str(tmp_path / "bf16"), param_dtype="bfloat16")
  assert params["embed"].dtype.name == "bfloat16"
  np.testing.assert_array_equal(np.asarray(params["embed"], np.float32),
                                hf.model.embed_tokens.weight.detach().float().numpy())
  np.testing.assert_array_equal(np.asarray(params["layers"]["mlp"]["down"][1], np.float32),
                                hf.model.layers[1].mlp.down_proj.weight.detach().float().numpy().T)
  model.to_hf(cfg, params, str(tmp_path / "out"))
  assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
  loaded = LlamaForCausalLM.from_pretrained(str(tmp_path / "out"), dtype=torch.bfloat16)
  torch.testing.assert_close(loaded.model.layers[2].self_attn.k_proj.weight, hf.model.layers[2].self_attn.k_proj.weight,
                             rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------- error cases


@pytest.fixture
def saved(tmp_path):
  _hf_model(2).save_pretrained(tmp_path, max_shard_size="40KB")
  return tmp_path


def _edit_config(path, **changes):
  cfg = json.loads((path / "config.json").read_text())
  cfg.update(changes)
  (path / "config.json").write_text(json.dumps(cfg))


def _file_of(path, key):
  return json.loads((path / "model.safetensors.index.json").read_text())["weight_map"][key]


@pytest.mark.parametrize("changes, match", [
    ({"architectures": ["MistralForCausalLM"], "model_type": "mistral"}, "unsupported architecture"),
    ({"model_type": "qwen2"}, "unsupported architecture"),
    ({"tie_word_embeddings": True}, "'lm_head.weight' differs from the embedding.*tie_word_embeddings=true"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "rope_type='linear'"),
])
def test_unsupported_config(saved, changes, match):
  _edit_config(saved, **changes)
  with pytest.raises((ValueError, KeyError), match=match) as e:
    model.from_hf(str(saved))
  assert "config.json" in str(e.value)


def test_missing_config_key(saved):
  cfg = json.loads((saved / "config.json").read_text())
  del cfg["intermediate_size"]
  (saved / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(KeyError, match="config.json.*intermediate_size"):
    model.from_hf(str(saved))


def test_missing_tensor(saved):
  key = "model.layers.1.self_attn.v_proj.weight"
  name = _file_of(saved, key)
  tensors = load_file(saved / name)
  del tensors[key]
  tensors["placeholder"] = np.zeros(1, np.float32)  # keep the file non-empty
  save_file(tensors, saved / name)
  index = json.loads((saved / "model.safetensors.index.json").read_text())
  del index["weight_map"][key]
  index["weight_map"]["placeholder"] = name
  (saved / "model.safetensors.index.json").write_text(json.dumps(index))
  with pytest.raises(KeyError, match="placeholder"):  # the stray tensor is reported first, with its file
    model.from_hf(str(saved))
  tensors.pop("placeholder")
  save_file(tensors, saved / name) if tensors else os.remove(saved / name)
  index["weight_map"].pop("placeholder")
  (saved / "model.safetensors.index.json").write_text(json.dumps(index))
  with pytest.raises(KeyError, match=r"missing tensor.*layers\.1\.self_attn\.v_proj\.weight"):
    model.from_hf(str(saved))


def test_unexpected_tensor(saved):
  key = "model.layers.0.mlp.up_proj.weight"
  name = _file_of(saved, key)
  tensors = load_file(saved / name)
  tensors["model.layers.0.mlp.up_proj.bias"] = np.zeros(100, np.float32)
  save_file(tensors, saved / name)
  with pytest.raises(KeyError, match=rf"up_proj\.bias.*{name}"):
    model.from_hf(str(saved))


def test_index_names_wrong_file(saved):
  index = json.loads((saved / "model.safetensors.index.json").read_text())
  key = "model.norm.weight"
  other = next(f for f in set(index["weight_map"].values()) if f != index["weight_map"][key])
  index["weight_map"][key] = other
  (saved / "model.safetensors.index.json").write_text(json.dumps(index))
  with pytest.raises(KeyError, match=rf"model\.norm\.weight.*{other}"):
    model.from_hf(str(saved))


def test_shape_mismatch(saved):
  _edit_config(saved, intermediate_size=64)
  with pytest.raises(ValueError, match=r"gate_proj\.weight.*shape \(100, 48\).*expected \(64, 48\)") as e:
    model.from_hf(str(saved))
  assert ".safetensors" in str(e.value)


def test_not_a_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    model.from_hf(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(_hf_model(2).config.to_dict()))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    model.from_hf(str(tmp_path))
