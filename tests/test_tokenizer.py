"""Tokenizers: sentencepiece trained here (function and CLI) and a HF byte-level BPE tokenizer.json, one interface."""
import json
import pickle
import subprocess
import sys

import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from dsmath.data import HFTokenizer, SentencePieceTokenizer, Tokenizer, load_tokenizer, train_sentencepiece
from dsmath.paths import REPO_ROOT
from tests.helpers.hf_family import gsm8k_texts

SAMPLES = [
    "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\n#### 72",
    "  leading spaces, trailing spaces  ",
    "tabs\tand\n\nblank lines\r\nwindows newline",
    "Unicode: 日本語, café, ∑_{k=1}^{n} k = \\frac{n(n+1)}{2}, emoji 🙂",
    "",
]


def _training_texts(n=2000):
  return gsm8k_texts(n)


@pytest.fixture(scope="module")
def spm_tok(tmp_path_factory):
  return train_sentencepiece(_training_texts(), tmp_path_factory.mktemp("spm") / "toy.model", vocab_size=400)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A byte-level BPE tokenizer.json built like DeepSeek's (no download), with DeepSeek's special-token names."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]
  trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(_training_texts(), trainer)
  d = tmp_path_factory.mktemp("hf")
  tok.save(str(d / "tokenizer.json"))
  return d


def test_sentencepiece_round_trip_and_special_ids(spm_tok):
  assert isinstance(spm_tok, Tokenizer)
  assert (spm_tok.pad_id, spm_tok.bos_id, spm_tok.eos_id) == (0, 2, 3)
  assert spm_tok.vocab_size == 400
  for text in SAMPLES:
    ids = spm_tok.encode(text)
    assert spm_tok.bos_id not in ids and spm_tok.eos_id not in ids
    assert spm_tok.decode(ids) == text
  assert spm_tok.encode_batch(SAMPLES) == [spm_tok.encode(t) for t in SAMPLES]
  # Digits are split one per piece, as in DeepSeek's tokenizer.
  assert len(spm_tok.encode("1234567")) == 7
  # Special ids decode to nothing.
  assert spm_tok.decode([spm_tok.bos_id] + spm_tok.encode("abc") + [spm_tok.eos_id]) == "abc"


def test_sentencepiece_pickles_for_workers(spm_tok):
  clone = pickle.loads(pickle.dumps(spm_tok))
  assert clone.encode(SAMPLES[0]) == spm_tok.encode(SAMPLES[0])
  assert (clone.bos_id, clone.eos_id, clone.vocab_size) == (spm_tok.bos_id, spm_tok.eos_id, spm_tok.vocab_size)


def test_sentencepiece_cli_trains_from_shared_source(tmp_path):
  out = tmp_path / "cli.model"
  proc = subprocess.run(
      [sys.executable, "-m", "dsmath.data.tokenizer", "train", "--input", "shared:gsm8k/train.jsonl", "--text-field",
       "question", "--vocab-size", "400", "--max-chars", "200000", "--output", str(out)],
      capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
  assert proc.returncode == 0, proc.stderr
  info = json.loads(proc.stdout.strip().splitlines()[-1])
  assert info["vocab_size"] == 400 and out.is_file()
  tok = load_tokenizer(str(out))
  assert isinstance(tok, SentencePieceTokenizer)
  assert tok.decode(tok.encode(SAMPLES[0])) == SAMPLES[0]


def test_sentencepiece_too_small_vocab_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="vocab_size=270 is too small"):
    train_sentencepiece(_training_texts(200), tmp_path / "small.model", vocab_size=270)
  assert not (tmp_path / "small.model").exists()


def test_hf_byte_level_bpe_round_trip(hf_dir):
  tok = load_tokenizer(str(hf_dir / "tokenizer.json"))
  assert isinstance(tok, HFTokenizer) and isinstance(tok, Tokenizer)
  raw = tokenizers.Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
  assert tok.bos_id == raw.token_to_id("<｜begin▁of▁sentence｜>")
  assert tok.eos_id == raw.token_to_id("<｜end▁of▁sentence｜>")
  assert tok.pad_id == tok.eos_id  # no pad token in the file
  assert tok.vocab_size == raw.get_vocab_size()
  for text in SAMPLES:
    ids = tok.encode(text)
    assert ids == raw.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text
  assert tok.encode_batch(SAMPLES) == [tok.encode(t) for t in SAMPLES]
  assert tok.decode([tok.bos_id] + tok.encode("x = 1") + [tok.eos_id]) == "x = 1"
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.encode(SAMPLES[3]) == tok.encode(SAMPLES[3])


def test_hf_tokenizer_config_and_factory(hf_dir, tmp_path):
  # A folder works as a path; tokenizer_config.json beside the file names the special tokens.
  (hf_dir / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": {"content": "<｜end▁of▁sentence｜>"}, "eos_token": "<｜begin▁of▁sentence｜>"}))
  try:
    tok = load_tokenizer({"kind": "hf", "path": str(hf_dir)})
    assert tok.bos_id > tok.eos_id  # swapped by the config file
  finally:
    (hf_dir / "tokenizer_config.json").unlink()
  with pytest.raises(ValueError, match="no pad token|no bos token"):
    HFTokenizer(hf_dir, bos_token="<nope>")
  with pytest.raises(KeyError, match="valid keys"):
    load_tokenizer({"path": str(hf_dir), "vocab": 3})
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing.model")):
    load_tokenizer(str(tmp_path / "missing.model"))
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    load_tokenizer({"kind": "hf", "path": str(tmp_path)})
