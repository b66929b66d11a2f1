"""Tokenizers behind one small interface: sentencepiece (trained here for toy runs) and HF `tokenizer.json`.

`encode` never adds BOS/EOS: the pipeline adds them explicitly, so both implementations behave the same. A tokenizer
says whether sequences start with its BOS (`add_bos`: Qwen's tokenizers have none), which ids end a completion
(`stop_ids`), and carries the model's chat template when it has one (`chat_template`, dsmath.data.chat);
`prompt_ids` turns a prompt into the ids a model sees, plain or in the chat template.

CLI (toy runs): train a sentencepiece model from files or configured sources, in a few seconds for a small vocab:
  python -m dsmath.data.tokenizer train --input 'shared:gsm8k/train.jsonl' --text-field question \
      --vocab-size 512 --output runs/tok/spm.model
  python -m dsmath.data.tokenizer train --config configs/pretrain_toy.py --vocab-size 512 --output runs/tok/spm.model
"""
import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Protocol, Sequence, runtime_checkable

import sentencepiece as spm
import tokenizers

from dsmath.data.chat import ChatTemplate
from dsmath.files import write_atomic

# Special pieces of the sentencepiece models trained here. pad = 0 matches the padding segment id 0.
SPM_PAD, SPM_UNK, SPM_BOS, SPM_EOS = "<pad>", "<unk>", "<s>", "</s>"

# Names under which HF tokenizers spell their BOS/EOS/PAD tokens, tried in order when not given explicitly.
_HF_BOS_NAMES = ("<｜begin▁of▁sentence｜>", "<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "[CLS]")
_HF_EOS_NAMES = ("<｜end▁of▁sentence｜>", "<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>", "[SEP]")
_HF_PAD_NAMES = ("<｜pad▁of▁sentence｜>", "<pad>", "<|pad|>", "[PAD]")


@runtime_checkable
class Tokenizer(Protocol):
  """What the pipeline, trainer, sampler and evaluation need from a tokenizer."""
  bos_id: int | None  # None: the tokenizer has no BOS (Qwen)
  eos_id: int  # appended after a trained document or response
  pad_id: int
  vocab_size: int
  add_bos: bool  # sequences start with bos_id
  stop_ids: tuple[int, ...]  # every id that ends a sampled completion (eos_id first)
  chat_template: ChatTemplate | None

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS."""

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` (special tokens dropped; ids past the vocabulary, which a model with a larger embedding table
    can sample, have no text and are dropped too)."""

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` over many texts (in parallel where the backend can)."""


class SentencePieceTokenizer:
  """A sentencepiece model file. Picklable (for Grain workers): it pickles the model bytes, not the C++ object."""

  def __init__(self, model_path: str | os.PathLike | None = None, *, model_proto: bytes | None = None):
    if model_proto is None:
      path = Path(model_path)
      if not path.is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {path}")
      model_proto = path.read_bytes()
    self._proto = model_proto
    self.path = None if model_path is None else str(model_path)
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.bos_id, self.eos_id, self.pad_id = self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id()
    self.vocab_size = self._sp.get_piece_size()
    for name, value in (("bos", self.bos_id), ("eos", self.eos_id), ("pad", self.pad_id)):
      if value < 0:
        raise ValueError(f"sentencepiece model {self.path or '<bytes>'} has no {name} piece; retrain with "
                         f"{name}_id set")
    self.add_bos, self.stop_ids, self.chat_template = True, (self.eos_id,), None

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._sp.encode(list(texts), num_threads=0)

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size])

  def __getstate__(self):
    return {"proto": self._proto, "path": self.path}

  def __setstate__(self, state):
    self.__init__(state["path"], model_proto=state["proto"])


class HFTokenizer:
  """A HF `tokenizer.json` (DeepSeek's, Qwen's, Llama 3's byte-level BPE) loaded through the `tokenizers` library,
  with the model's own special tokens and chat template from the files beside it, as transformers reads them:

  tokenizer_config.json   bos_token / eos_token / pad_token (a null bos_token: no BOS, as Qwen), add_bos_token,
                          chat_template (a string, or named templates of which "default" is used)
  chat_template.jinja     the chat template as transformers 5 saves it (preferred to the config's, as there)
  generation_config.json  eos_token_id: an id or a list (e.g. Qwen's <|im_end|> and <|endoftext|>), all of which end
                          a sampled completion
  Arguments override the files (`chat_template`: a path to a Jinja file). Without a pad token, pad = eos (padding is
  marked by segment id 0 anyway). BOS: added whenever the tokenizer has one, unless add_bos_token is false
  (transformers 5 goes by tokenizer.json's post-processor instead; for DeepSeek, Qwen and Llama 3 the two agree).
  The chat template's end-of-turn token (e.g. <|im_end|>, <|eot_id|>) also ends a completion.
  """

  def __init__(self, path: str | os.PathLike, *, bos_token: str | None = None, eos_token: str | None = None,
               pad_token: str | None = None, chat_template: str | os.PathLike | None = None):
    path = Path(path)
    if path.is_dir():
      path = path / "tokenizer.json"
    if not path.is_file():
      raise FileNotFoundError(f"HF tokenizer file not found: {path}")
    self.path = str(path)
    self._overrides = {"bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token,
                       "chat_template": None if chat_template is None else str(chat_template)}
    self._load()

  def _load(self) -> None:
    path, over = Path(self.path), self._overrides
    self._tok = tokenizers.Tokenizer.from_file(self.path)
    config_file = path.parent / "tokenizer_config.json"
    hf_config = _read_hf_tokenizer_config(config_file)
    if over["bos_token"] or "bos_token" not in hf_config or hf_config["bos_token"] is not None:
      self.bos_id = self._special_id("bos", over["bos_token"] or hf_config.get("bos_token"), _HF_BOS_NAMES)
    else:  # the config says so: this tokenizer has no BOS (Qwen)
      self.bos_id = None
    self.eos_id = self._special_id("eos", over["eos_token"] or hf_config.get("eos_token"), _HF_EOS_NAMES)
    pad = over["pad_token"] or hf_config.get("pad_token")
    try:
      self.pad_id, has_pad = self._special_id("pad", pad, _HF_PAD_NAMES), True
    except ValueError:
      self.pad_id, has_pad = self.eos_id, False
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self.add_bos = self.bos_id is not None and bool(hf_config.get("add_bos_token", True))
    self.chat_template = self._chat_template(over["chat_template"], hf_config, config_file, has_pad)
    stops = [self.eos_id] + _generation_eos_ids(path.parent / "generation_config.json")
    if self.chat_template is not None:
      turn_end = self._tok.encode(self.chat_template.turn_end(), add_special_tokens=False).ids[:1]
      stops += [i for i in turn_end if self._is_special(i)]
    self.stop_ids = tuple(dict.fromkeys(stops))

  def _chat_template(self, override: str | None, hf_config: dict, config_file: Path,
                     has_pad: bool) -> ChatTemplate | None:
    jinja_file = config_file.parent / "chat_template.jinja"
    if override or jinja_file.is_file():  # transformers too prefers the file to the config's entry
      origin = override or str(jinja_file)
      source = Path(origin).read_text(encoding="utf-8")
    elif hf_config.get("chat_template"):
      source, origin = hf_config["chat_template"], str(config_file)
    else:
      return None
    special = {}  # the variables transformers passes (its special_tokens_map: only the tokens the tokenizer has)
    for name, idx in (("bos_token", self.bos_id), ("eos_token", self.eos_id),
                      ("pad_token", self.pad_id if has_pad else None)):
      if idx is not None:
        special[name] = self._tok.id_to_token(idx)
    if hf_config.get("unk_token"):
      special["unk_token"] = hf_config["unk_token"]
    return ChatTemplate(source=source, special_tokens=special, origin=origin)

  def _is_special(self, idx: int) -> bool:
    token = self._tok.get_added_tokens_decoder().get(idx)
    return token is not None and token.special

  def _special_id(self, what: str, token: str | None, candidates: Sequence[str]) -> int:
    names = (token,) if token else candidates
    for name in names:
      idx = self._tok.token_to_id(name)
      if idx is not None:
        return idx
    added = [t.content for t in self._tok.get_added_tokens_decoder().values()]
    raise ValueError(f"{self.path}: no {what} token among {list(names)}; the file's added tokens are {added}; "
                     f"pass {what}_token=...")

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size], skip_special_tokens=True)

  def __getstate__(self):
    return {"path": self.path, "overrides": self._overrides}

  def __setstate__(self, state):
    self.path, self._overrides = state["path"], state["overrides"]
    self._load()


def _read_hf_tokenizer_config(path: Path) -> dict:
  """The keys of a tokenizer_config.json that matter here; a key the file sets to null is kept as None."""
  if not path.is_file():
    return {}
  try:
    cfg = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  out = {}
  for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
    if key in cfg:
      value = cfg[key]
      out[key] = value.get("content") if isinstance(value, dict) else value
  if "add_bos_token" in cfg:
    out["add_bos_token"] = cfg["add_bos_token"]
  template = cfg.get("chat_template")
  if isinstance(template, list):  # named templates: [{name, template}, ...]; transformers uses "default"
    named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    if "default" not in named:
      raise ValueError(f"{path}: chat_template lists templates {sorted(named)} but none named 'default'")
    template = named["default"]
  if template is not None and not isinstance(template, str):
    raise ValueError(f"{path}: chat_template must be a string or a list of named templates")
  out["chat_template"] = template
  return out


def _generation_eos_ids(path: Path) -> list[int]:
  """generation_config.json's eos_token_id (an id or a list of ids), [] without the file or key."""
  if not path.is_file():
    return []
  try:
    value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  ids = value if isinstance(value, list) else [] if value is None else [value]
  if not all(isinstance(i, int) for i in ids):
    raise ValueError(f"{path}: eos_token_id must be an id or a list of ids, got {value!r}")
  return ids


def prompt_ids(tokenizer: Tokenizer, text: str, chat: bool = False) -> list[int]:
  """The ids a model sees for the prompt `text`: [BOS] (when the tokenizer adds one) + text; with chat, the
  tokenizer's chat template around one user turn, with the assistant header (the template writes its own BOS),
  as transformers' apply_chat_template(add_generation_prompt=True) tokenizes it."""
  if chat:
    return tokenizer.encode(chat_template_of(tokenizer).prompt(text))
  return bos_prefix(tokenizer) + tokenizer.encode(text)


def bos_prefix(tokenizer: Tokenizer) -> list[int]:
  """[bos_id] when the tokenizer starts sequences with it, else []."""
  return [tokenizer.bos_id] if tokenizer.add_bos else []


def chat_template_of(tokenizer: Tokenizer) -> ChatTemplate:
  """The tokenizer's chat template; an error naming the tokenizer when it has none."""
  if tokenizer.chat_template is None:
    raise ValueError(f"tokenizer {getattr(tokenizer, 'path', None) or type(tokenizer).__name__} has no chat template "
                     f"(chat prompts need a HF tokenizer whose tokenizer_config.json or chat_template.jinja holds one, "
                     f"or the tokenizer key chat_template: a Jinja file)")
  return tokenizer.chat_template


TOKENIZER_KINDS = {"sentencepiece": SentencePieceTokenizer, "hf": HFTokenizer}


def load_tokenizer(config_or_path) -> Tokenizer:
  """A tokenizer from a path (`*.model` = sentencepiece; `tokenizer.json` or a folder holding one = HF) or a config
  mapping {kind: "sentencepiece"|"hf" (optional, inferred from the path), path, bos_token, eos_token, pad_token,
  chat_template (a Jinja file)}."""
  if isinstance(config_or_path, (str, os.PathLike)):
    cfg = {"path": str(config_or_path)}
  else:
    cfg = dict(config_or_path)
  valid = {"kind", "path", "bos_token", "eos_token", "pad_token", "chat_template"}
  unknown = sorted(set(cfg) - valid)
  if unknown:
    raise KeyError(f"unknown tokenizer config key(s) {unknown}; valid keys: {sorted(valid)}")
  path = cfg.get("path")
  if not path:
    raise ValueError("tokenizer config needs a `path` (a sentencepiece .model or a HF tokenizer.json)")
  from dsmath.data.sources import resolve_path  # sources imports nothing from here; avoids a cycle at import time
  path = resolve_path(path)
  kind = cfg.get("kind") or ("hf" if (path.endswith(".json") or Path(path).is_dir()) else "sentencepiece")
  if kind not in TOKENIZER_KINDS:
    raise KeyError(f"unknown tokenizer kind {kind!r}; valid kinds: {sorted(TOKENIZER_KINDS)}")
  if kind == "hf":
    return HFTokenizer(path, bos_token=cfg.get("bos_token"), eos_token=cfg.get("eos_token"),
                       pad_token=cfg.get("pad_token"),
                       chat_template=resolve_path(cfg["chat_template"]) if cfg.get("chat_template") else None)
  extra = sorted(k for k in ("bos_token", "eos_token", "pad_token", "chat_template") if cfg.get(k))
  if extra:
    raise KeyError(f"tokenizer keys {extra} only apply to kind 'hf'; a sentencepiece model carries its own ids")
  return SentencePieceTokenizer(path)


def _training_lines(texts: Iterable[str], max_chars: int) -> Iterable[str]:
  """Non-empty lines of the texts up to max_chars in total (sentencepiece trains on sentences, not documents)."""
  total = 0
  for text in texts:
    for line in text.split("\n"):
      line = line.strip("\r")
      if not line.strip():
        continue
      yield line
      total += len(line)
      if total >= max_chars:
        return


def train_sentencepiece(texts: Iterable[str], output_path: str | os.PathLike, *, vocab_size: int = 512,
                        model_type: str = "bpe", max_chars: int = 3_000_000, character_coverage: float = 0.995,
                        seed_sentencepiece_size: int = 100_000, num_threads: int = 2) -> SentencePieceTokenizer:
  """Trains a byte-fallback sentencepiece model on texts and writes it atomically to output_path (a `.model` file).

  Lossless by construction: identity normalisation, no dummy prefix, whitespace kept, digits split (as DeepSeek's
  tokenizer does), bytes for anything outside the vocabulary (so a small vocab still covers any text), newline and tab
  as their own pieces. Ids: pad 0, unk 1, bos 2, eos 3. vocab_size must exceed 262 (256 byte pieces + 6 specials).
  """
  output_path = Path(output_path)
  output_path.parent.mkdir(parents=True, exist_ok=True)
  lines = list(_training_lines(texts, max_chars))
  if not lines:
    raise ValueError("train_sentencepiece: no non-empty text to train on")
  with tempfile.TemporaryDirectory(dir=output_path.parent) as tmp:
    prefix = os.path.join(tmp, "spm")  # the trainer writes <prefix>.model and <prefix>.vocab
    try:
      _spm_train(lines, prefix, vocab_size, model_type, character_coverage, seed_sentencepiece_size, num_threads)
    except RuntimeError as e:
      if "required_chars" not in str(e):
        raise
      raise ValueError(f"vocab_size={vocab_size} is too small for the training text's characters (256 byte pieces "
                       f"and 6 special pieces come first): raise vocab_size or lower character_coverage "
                       f"({e})") from None
    write_atomic(output_path, lambda dest: os.replace(prefix + ".model", dest))
  return SentencePieceTokenizer(output_path)


def _spm_train(lines, prefix, vocab_size, model_type, character_coverage, seed_sentencepiece_size, num_threads):
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
      character_coverage=character_coverage, byte_fallback=True, split_digits=True,
      normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
      allow_whitespace_only_pieces=True, user_defined_symbols=["\n", "\t"],
      pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=SPM_PAD, unk_piece=SPM_UNK, bos_piece=SPM_BOS,
      eos_piece=SPM_EOS, seed_sentencepiece_size=seed_sentencepiece_size, num_threads=num_threads,
      max_sentence_length=1 << 16, hard_vocab_limit=False, minloglevel=2)


def train_sentencepiece_from_sources(sources, output_path, *, vocab_size: int = 512, max_chars: int = 3_000_000,
                                     **kwargs) -> SentencePieceTokenizer:
  """Trains on the texts of configured sources ({name: source config}, see dsmath.data.config), in name order."""
  from dsmath.data.sources import iter_source_texts
  return train_sentencepiece(iter_source_texts(sources), output_path, vocab_size=vocab_size, max_chars=max_chars,
                             **kwargs)


def _main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m dsmath.data.tokenizer", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train a sentencepiece model for toy runs")
  train.add_argument("--input", action="append", default=[],
                     help="file glob (jsonl/parquet/array_record; 'shared:' = the shared data folder); repeatable")
  train.add_argument("--text-field", default="text", help="record field holding the text (for --input)")
  train.add_argument("--formatter", default=None, help="a dsmath.data.sources.FORMATTERS name instead of a field")
  train.add_argument("--config", default=None, help="a config file whose data.sources give the texts")
  train.add_argument("--output", required=True, help="path of the .model file to write")
  train.add_argument("--vocab-size", type=int, default=512)
  train.add_argument("--model-type", default="bpe", choices=["bpe", "unigram"])
  train.add_argument("--max-chars", type=int, default=3_000_000, help="cap on training text (keeps training fast)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  if bool(args.input) == bool(args.config):
    parser.error("give either --input (one or more) or --config")
  if args.config:
    from dsmath.data.config import load_config_file
    sources = load_config_file(args.config).data.sources
  else:
    sources = {f"input{i}": {"path": p, "text_field": args.text_field, "formatter": args.formatter or ""}
               for i, p in enumerate(args.input)}
  tok = train_sentencepiece_from_sources(sources, args.output, vocab_size=args.vocab_size, max_chars=args.max_chars,
                                         model_type=args.model_type)
  print(json.dumps({"output": str(args.output), "vocab_size": tok.vocab_size, "bos_id": tok.bos_id,
                    "eos_id": tok.eos_id, "pad_id": tok.pad_id}))
  return 0


if __name__ == "__main__":
  raise SystemExit(_main())
