"""A model's chat template (the Jinja text of its tokenizer_config.json), rendered as HF transformers renders it.

transformers' `apply_chat_template` compiles the template in a sandboxed Jinja environment with `trim_blocks` and
`lstrip_blocks`, the loop-control extension, its own `tojson` filter and the globals `raise_exception`,
`strftime_now` and `namespace`, and renders it with `messages`, `add_generation_prompt` and the tokenizer's special
tokens (`bos_token`, `eos_token`, ...) as variables; the text is then tokenized without adding special tokens (the
template writes them). `ChatTemplate.render` does the same, so the token ids equal transformers' (checked in
tests/test_chat_template.py against `apply_chat_template` on the same files).

Prompts in dsmath are one user turn: `prompt(text)` is the conversation [user: text] with the assistant header the
model continues from; `assistant_turn(text, response)` is what the template writes for the reply (the response and
the template's end of turn), which SFT trains on.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
from typing import Mapping, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# A reply no template changes (no surrounding whitespace to trim, no think tags), to find where replies go.
_PROBE = "dsmath-probe-reply"


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  # transformers' filter: Jinja's own escapes HTML characters
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def _compiled(source: str) -> jinja2.Template:
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  env.globals["namespace"] = jinja2.utils.Namespace
  return env.from_string(source)


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """source: the Jinja text; special_tokens: {bos_token, eos_token, pad_token, unk_token: text} as the tokenizer
  names them (the template reads them as variables); origin: the file it came from (named in errors)."""
  source: str
  special_tokens: Mapping[str, str]
  origin: str

  def render(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """The conversation as text, special tokens written out (`apply_chat_template(..., tokenize=False)`)."""
    try:
      return _compiled(self.source).render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                           add_generation_prompt=add_generation_prompt, **self.special_tokens)
    except jinja2.TemplateError as e:
      raise ValueError(f"{self.origin}: the chat template failed: {e}") from None

  def prompt(self, text: str) -> str:
    """One user turn holding `text`, then the assistant header the model writes its reply after."""
    return self.render([{"role": "user", "content": text}], add_generation_prompt=True)

  def assistant_turn(self, text: str, response: str) -> str:
    """What the template writes after `prompt(text)` for the reply `response`: the reply and its end of turn (and
    whatever the template puts before the reply, e.g. an empty think block)."""
    prompt = self.prompt(text)
    full = self.render([{"role": "user", "content": text}, {"role": "assistant", "content": response}])
    if not full.startswith(prompt):
      raise ValueError(f"{self.origin}: the chat template renders the conversation with a reply differently from "
                       f"the prompt it gives to generate from (the reply turn does not extend it), so SFT could not "
                       f"train on what the model sees at inference")
    return full[len(prompt):]

  def turn_end(self) -> str:
    """The text the template writes after a reply (e.g. "<|im_end|>\\n", "<|eot_id|>")."""
    full = self.render([{"role": "user", "content": "q"}, {"role": "assistant", "content": _PROBE}])
    return full.rsplit(_PROBE, 1)[1] if _PROBE in full else ""
