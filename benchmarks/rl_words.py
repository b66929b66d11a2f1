"""The RL benchmarks' task: prompts of random words over a word-level tokenizer (one token a word, so lengths are
exact on dsmath and on HF peers alike) and a reward anyone can compute (the fraction of even token ids), set up through
dsmath's public RL API (`build_task` over a JSONL question set, a reward registered in `REWARDS`, `resolve_rl_config`).
"""
import json
import os

import numpy as np

from dsmath import rl
from dsmath.rl import rewards

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0..3; the rest are words "w<id>"
REWARD = "even_fraction"


class HFTokenizerAdapter:
  """The dsmath tokenizer face (encode/decode/ids) over an HF fast tokenizer, so both sides read the same text."""

  def __init__(self, hf_tok):
    self.hf = hf_tok
    self.vocab_size = len(hf_tok)
    self.pad_id, self.bos_id, self.unk_id = 0, 1, 3
    self.add_bos = True  # prompts start with <bos>, as TRL's (its dataset's texts begin with it)
    self.eos_id = None  # completions run to the full length (as min_new_tokens forces on an HF peer)
    self.stop_ids = ()

  def encode(self, text):
    return self.hf.encode(text, add_special_tokens=False)

  def decode(self, ids):
    return self.hf.decode(list(ids), skip_special_tokens=False)


def build_tokenizer(vocab_size: int):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  vocab = {t: i for i, t in enumerate(SPECIALS)}
  vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
  return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                 unk_token="<unk>")


def even_fraction(ids, mask=None) -> np.ndarray:
  """Reward [R]: the fraction of even token ids in each completion."""
  ids = np.asarray(ids)
  mask = np.ones(ids.shape, np.float32) if mask is None else np.asarray(mask)
  return ((ids % 2 == 0) * mask).sum(-1) / np.maximum(mask.sum(-1), 1.0)


def _dsmath_reward(texts, golds, tokens, lengths):
  mask = np.arange(tokens.shape[1])[None] < np.asarray(lengths)[:, None]
  return even_fraction(tokens, mask)


def word_prompts(vocab_size: int, n: int, prompt_len: int, seed: int = 0) -> list[str]:
  """n prompts of prompt_len - 1 random words (the task adds BOS)."""
  words = np.random.default_rng(seed).integers(len(SPECIALS), vocab_size, (n, prompt_len - 1))
  return [" ".join(f"w{i}" for i in row) for row in words]


def rl_config(texts: list[str], workdir: str, *, method: str, questions_per_step: int, group: int,
              completion_len: int):
  """The RL stage config of a run over `texts` with the even-fraction reward (registered here)."""
  questions = os.path.join(workdir, "questions.jsonl")
  with open(questions, "w") as f:
    f.writelines(json.dumps({"question": t, "answer": "0"}) + "\n" for t in texts)
  if REWARD not in rewards.REWARDS:
    rewards.register_reward(REWARD, rewards.Reward(False, False, "fraction of even token ids", _dsmath_reward))
  config = rl.default_config()
  config.task.sources = {"words": {"kind": "jsonl", "train_path": questions}}
  config.task.prompt = "plain"  # the question; the newline is whitespace to the word-level tokenizer
  config.rl.method = method
  config.rl.reward = REWARD
  config.rollout.group_size = group
  config.rollout.prompts_per_step = questions_per_step
  config.rollout.max_new_tokens = completion_len
  config.loss.beta = 0.04
  config.optimizer.weight_decay = 0.0  # TRL's default
  return config
