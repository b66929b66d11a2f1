"""HF tokenizers of real model families with their chat templates: the ids dsmath gives a prompt equal the ids
transformers gives it (AutoTokenizer on the same files: apply_chat_template for chat prompts, the plain call for
plain ones), the model's own BOS / EOS / pad and stop ids, and SFT on the template's assistant turn.

The tokenizers are byte-level BPEs trained here with the Qwen2.5 and Llama 3 special tokens, and chat templates
written here in each family's form (tests/helpers/hf_family.py); nothing is downloaded.
"""
import json
import pickle

import pytest
from transformers import AutoTokenizer

from dsmath.data import ChatTemplate, HFTokenizer, load_tokenizer, prompt_ids
from dsmath.data import prompts as prompt_lib
from dsmath.data.pipeline import _TokenizeSft
from dsmath.data.sft import ChatSftTemplate, example_segments, gsm8k_cot, user_text
from tests.helpers.hf_family import FAMILIES, write_tokenizer

QUESTIONS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
             "clips did Natalia sell altogether in April and May?",
             "  Leading spaces, unicode: café, 日本語, ∑ k = n(n+1)/2\n\nand a blank line. ",
             "What is $\\frac{1}{2} + \\frac{1}{3}$?"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tokenizers_(request, tmp_path_factory):
  """(family, dsmath's HFTokenizer, transformers' tokenizer) of the same directory."""
  path = tmp_path_factory.mktemp(request.param)
  write_tokenizer(request.param, path)
  return request.param, load_tokenizer(str(path)), AutoTokenizer.from_pretrained(str(path))


def test_chat_prompts_are_transformers_apply_chat_template(tokenizers_):
  family, ours, theirs = tokenizers_
  for q in QUESTIONS:
    text = prompt_lib.zero_shot_prompt(prompt_lib.Record(benchmark="gsm8k", id="0", question=q, answer="1"))
    messages = [{"role": "user", "content": text}]
    want_text = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.chat_template.prompt(text) == want_text
    want = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
    assert prompt_ids(ours, text, chat=True) == want["input_ids"]
    # A whole conversation too (system turn, two exchanges), without the generation prompt.
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
            {"role": "assistant", "content": "It is 72."}, {"role": "user", "content": "Why?"}]
    assert ours.chat_template.render(conv) == theirs.apply_chat_template(conv, tokenize=False)
  if family == "llama3":  # the template writes BOS itself: once, first
    assert prompt_ids(ours, "x", chat=True)[:2] != [ours.bos_id] * 2 and prompt_ids(ours, "x", chat=True)[0] == \
        ours.bos_id


def test_plain_prompts_are_transformers_tokenization(tokenizers_):
  """A plain prompt gets the BOS the tokenizer adds (Llama 3) or none (Qwen: it has no BOS), as transformers'
  tokenizer(text) does."""
  family, ours, theirs = tokenizers_
  assert ours.add_bos == (family == "llama3")
  assert (ours.bos_id is None) == (family == "qwen2.5")
  for q in QUESTIONS:
    assert prompt_ids(ours, q) == theirs(q)["input_ids"]


def test_special_tokens_and_stop_ids_are_the_models(tokenizers_):
  family, ours, theirs = tokenizers_
  assert ours.eos_id == theirs.eos_token_id and ours.bos_id == theirs.bos_token_id
  assert ours.pad_id == (theirs.pad_token_id if theirs.pad_token_id is not None else ours.eos_id)
  turn_end = {"qwen2.5": "<|im_end|>", "llama3": "<|eot_id|>"}[family]
  # generation_config.json's eos, then the template's end of turn (a chat reply ends there)
  assert ours.stop_ids == (ours.eos_id, theirs.convert_tokens_to_ids(turn_end))
  clone = pickle.loads(pickle.dumps(ours))  # Grain workers get a pickled tokenizer
  assert (clone.stop_ids, clone.add_bos, clone.chat_template) == (ours.stop_ids, ours.add_bos, ours.chat_template)


def test_sft_in_the_chat_template_trains_on_what_transformers_renders(tokenizers_):
  """[prompt | assistant turn] tokens equal apply_chat_template of the whole conversation; only the assistant turn
  (the reply and its end of turn) is trained."""
  family, ours, theirs = tokenizers_
  record = {"question": QUESTIONS[0], "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"}
  style, question, response = gsm8k_cot(record)
  segments = example_segments(ChatSftTemplate(ours.chat_template), style, question, response)
  example = _TokenizeSft(ours, seq_len=512, wrap=False)({"item": segments})
  ids = [int(example["inputs"][0])] + [int(t) for t in example["targets"]]
  conv = [{"role": "user", "content": user_text(style, question)}, {"role": "assistant", "content": response}]
  assert ids == theirs.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
  trained = [int(t) for t, m in zip(example["targets"], example["loss_mask"]) if m]
  reply = ours.chat_template.assistant_turn(user_text(style, question), response)
  assert trained == ours.encode(reply) and ours.decode(trained).startswith(response.strip())
  assert trained[-2 if family == "qwen2.5" else -1] in ours.stop_ids  # "<|im_end|>\n" / "<|eot_id|>"


def test_template_sources_and_errors(tmp_path):
  path = tmp_path / "tok"
  write_tokenizer("qwen2.5", path)
  config = json.loads((path / "tokenizer_config.json").read_text())
  template = config.pop("chat_template")
  # Named templates (a list), as some tokenizer_config.json files hold them: "default" is the one used.
  (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": [
      {"name": "tool_use", "template": "{{ 'tools' }}"}, {"name": "default", "template": template}]}))
  assert HFTokenizer(path).chat_template.source == template
  # transformers 5 writes chat_template.jinja beside the config; the file wins over a config entry, as there.
  (path / "chat_template.jinja").write_text(template)
  assert HFTokenizer(path).chat_template.origin == str(path / "chat_template.jinja")
  assert AutoTokenizer.from_pretrained(str(path)).chat_template == template
  (path / "tokenizer_config.json").write_text(json.dumps(config))
  # An explicit file (the tokenizer config key chat_template) overrides both.
  (tmp_path / "mine.jinja").write_text("{% for m in messages %}[{{ m.content }}]{% endfor %}"
                                       "{% if add_generation_prompt %}>{% endif %}")
  tok = load_tokenizer({"path": str(path), "chat_template": str(tmp_path / "mine.jinja")})
  assert tok.chat_template.prompt("q") == "[q]>"
  (path / "chat_template.jinja").unlink()
  plain = HFTokenizer(path)
  assert plain.chat_template is None and plain.stop_ids == (plain.eos_id,)
  with pytest.raises(ValueError, match=r"tok/tokenizer.json has no chat template"):
    prompt_ids(plain, "q", chat=True)
  broken = ChatTemplate("{{ raise_exception('only user turns') }}", {}, "somewhere/tokenizer_config.json")
  with pytest.raises(ValueError, match="somewhere/tokenizer_config.json: the chat template failed: only user turns"):
    broken.prompt("q")
  changes_history = ChatTemplate("{% for m in messages %}{% if loop.last %}{{ m.content }}{% endif %}{% endfor %}"
                                 "{% if add_generation_prompt %}A:{% endif %}", {}, "odd.jinja")
  with pytest.raises(ValueError, match="odd.jinja: the chat template renders the conversation with a reply"):
    changes_history.assistant_turn("q", "r")
  with pytest.raises(KeyError, match="only apply to kind 'hf'"):
    load_tokenizer({"path": str(tmp_path / "x.model"), "kind": "sentencepiece", "chat_template": "a.jinja"})
