"""The RL stage's task: the synthetic problems, its tokenizer and fixed-width prompt / completion arrays."""
import dataclasses
import os
from typing import Any

import numpy as np

from dsmath.data import synthetic
from dsmath.data.tokenizer import load_tokenizer, train_sentencepiece


@dataclasses.dataclass
class Task:
  train: list
  test: list
  tokenizer: Any
  prompt_len: int  # fixed left-padded prompt width (one compilation)
  completion_len: int

  def prompt_ids(self, problems) -> tuple[np.ndarray, np.ndarray]:
    rows = [[self.tokenizer.bos_id] + self.tokenizer.encode(p.prompt) for p in problems]
    out = np.full((len(rows), self.prompt_len), self.tokenizer.pad_id, np.int32)
    mask = np.zeros((len(rows), self.prompt_len), np.float32)
    for i, r in enumerate(rows):
      if len(r) > self.prompt_len:
        raise ValueError(f"prompt of {len(r)} tokens exceeds the prompt width {self.prompt_len}")
      out[i, self.prompt_len - len(r):], mask[i, self.prompt_len - len(r):] = r, 1.0
    return out, mask

  def completion_ids(self, texts) -> tuple[np.ndarray, np.ndarray]:
    """Texts + EOS, right-padded/truncated to completion_len."""
    out = np.full((len(texts), self.completion_len), self.tokenizer.pad_id, np.int32)
    mask = np.zeros((len(texts), self.completion_len), np.float32)
    for i, t in enumerate(texts):
      ids = (self.tokenizer.encode(t) + [self.tokenizer.eos_id])[:self.completion_len]
      out[i, :len(ids)], mask[i, :len(ids)] = ids, 1.0
    return out, mask


def build_task(config, workdir: str) -> Task:
  t = config.task
  diff = synthetic.difficulty_from_dict(t.difficulty.to_dict())
  train = synthetic.make_split("train", t.num_train, config.seed, diff, t.test_fraction)
  test = synthetic.make_split("test", t.num_test, config.seed, diff, t.test_fraction)
  if config.tokenizer:
    tok = load_tokenizer(config.tokenizer)
  else:
    texts = [p.prompt + p.solution for p in train]
    tok = train_sentencepiece(texts, os.path.join(workdir, "tokenizer", "spm.model"), vocab_size=int(t.tokenizer_vocab),
                              model_type=str(t.tokenizer_type))
  plen = max(len(tok.encode(p.prompt)) for p in train + test) + 1
  return Task(train, test, tok, prompt_len=int(-(-plen // 8) * 8), completion_len=int(config.rl.max_new_tokens))
