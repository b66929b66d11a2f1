"""A tiny model crafted to write a python block (for tool-integrated sampling and RL tests).

The model is the real dsmath decoder (tiny preset) with random weights plus a planted "successor" circuit: each
chain token's embedding is a unit direction that the LM head maps to the next chain token with a large margin.
Attention and MLP keep small random weights, so every log-prob depends on the whole context (and on the cache).
"""
import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from dsmath import model
from dsmath.data import prompts as eval_prompts
from dsmath.data.tokenizer import HFTokenizer

CFG = model.ModelConfig.preset("tiny")
ANSWER = "The answer is \\boxed{42}."
# what the model writes after its trigger, then what it writes after the program's output block
BODY = [eval_prompts.PYTHON_OPEN, "print(6*7)\n", eval_prompts.BLOCK_CLOSE, ANSWER, "<eos>"]


def byte_tokenizer(path) -> HFTokenizer:
  """A byte-level BPE (HF `tokenizers`) with the chain pieces as added tokens, loaded by dsmath's HFTokenizer."""
  vocab = {"<pad>": 0, "<s>": 1, "<eos>": 2}
  vocab.update({c: 3 + i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))})
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens(["<pad>", "<s>", "<eos>"])
  tok.add_tokens([AddedToken(t, normalized=False) for t in ["Answer:"] + BODY[:-1] + [eval_prompts.OUTPUT_OPEN]])
  tok.save(str(path))
  return HFTokenizer(path)


def planted_params(tokenizer, trigger: str) -> dict:
  """Params that write BODY after the token `trigger` (one token of `tokenizer`)."""
  chain = [trigger] + BODY
  ids = [tokenizer.encode(t)[0] if t != "<eos>" else tokenizer.eos_id for t in chain]
  assert all(len(tokenizer.encode(t)) == 1 for t in chain[:-1])
  p = model.init_params(CFG, jax.random.key(0))
  embed = np.asarray(p["embed"]).copy()
  embed[:, :len(ids)] = 0.0
  head = np.asarray(p["lm_head"]).copy() * 0.125
  for j, (tok, nxt) in enumerate(zip(ids[:-1], ids[1:])):
    embed[tok] = 0.0
    embed[tok, j] = 8.0  # unit rms after the final norm: direction j
    head[j, nxt] = 5.0  # logit margin ~40 for the successor
  layers = jax.tree.map(lambda x: x, p["layers"])
  layers["attn"]["o"] = p["layers"]["attn"]["o"] * 0.1
  layers["mlp"]["down"] = p["layers"]["mlp"]["down"] * 0.1
  return dict(p, embed=jnp.asarray(embed), lm_head=jnp.asarray(head), layers=layers)
