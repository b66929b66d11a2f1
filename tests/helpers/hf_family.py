"""HF-format model directories of the Qwen2.5 and Llama 3 families, built in code (nothing downloaded).

A directory holds what a Hub checkpoint holds: config.json + model.safetensors of a tiny random transformers model
(save_pretrained), tokenizer.json (a byte-level BPE trained here on GSM8K train text, with the family's special
tokens), tokenizer_config.json with a chat template written here in the family's form, and generation_config.json.
"""
import json

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from dsmath.paths import shared_data_dir

# Qwen2.5-Math's form: a default system turn with the CoT instruction, <|im_start|>role ... <|im_end|> turns.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within \\\\boxed{}."
    "<|im_end|>\\n' }}"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'system' and loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n")
# Llama 3's form: the template writes BOS; headers; contents trimmed; <|eot_id|> ends each turn.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n")

# The families' own pre-tokenizer splits (Qwen2: one digit a piece; Llama 3: up to three); transformers' Qwen2Tokenizer
# rebuilds Qwen's from this pattern whatever tokenizer.json says, so the files must hold it too.
_QWEN_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
_LLAMA3_SPLIT = _QWEN_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")

FAMILIES = {
    # specials, tokenizer_config.json (class, special tokens), chat template, generation_config eos token, split,
    # BOS post-processor
    "qwen2.5": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|endoftext|>",
                 "pad_token": "<|endoftext|>"}, QWEN_TEMPLATE, "<|endoftext|>", _QWEN_SPLIT, False),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                "eos_token": "<|end_of_text|>"}, LLAMA3_TEMPLATE, "<|end_of_text|>", _LLAMA3_SPLIT, True),
}


def gsm8k_texts(n: int = 1500) -> list[str]:
  """Question + worked answer of the first n GSM8K train problems (tokenizer training text)."""
  texts = []
  with open(shared_data_dir() / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
    for i, line in enumerate(f):
      if i == n:
        break
      r = json.loads(line)
      texts.append(r["question"] + "\n" + r["answer"])
  return texts


def write_tokenizer(family: str, path, vocab_size: int = 512) -> Tokenizer:
  """tokenizer.json, tokenizer_config.json (with the chat template) and generation_config.json in `path`."""
  specials, special_config, template, gen_eos, split, adds_bos = FAMILIES[family]
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(split), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(gsm8k_texts(), trainer)
  if adds_bos:  # Llama 3's tokenizer.json starts every encoding with <|begin_of_text|>
    bos = special_config["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
  path.mkdir(parents=True, exist_ok=True)
  tok.save(str(path / "tokenizer.json"))
  config = {"chat_template": template, **special_config}
  (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  (path / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.token_to_id(gen_eos)}))
  return tok


def write_model(family: str, path, vocab_size: int, seed: int = 0):
  """A tiny random model of the family (Qwen2.5: q/k/v biases, tied embeddings; Llama 3: llama3 RoPE scaling, tied
  embeddings) saved in `path`; returns it."""
  import torch
  from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
  torch.manual_seed(seed)
  common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6,
                tie_word_embeddings=True, initializer_range=0.1)
  if family == "qwen2.5":
    hf = Qwen2ForCausalLM(Qwen2Config(rope_theta=10000.0, **common))
  else:
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
    hf = LlamaForCausalLM(LlamaConfig(rope_parameters=rope, **common))
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  hf.eval().save_pretrained(path)
  return hf


def write_checkpoint(family: str, path):
  """A whole HF checkpoint directory of the family: the model and its tokenizer files."""
  tok = write_tokenizer(family, path)
  vocab = -(-tok.get_vocab_size() // 8) * 8  # the embedding padded past the tokenizer, as real checkpoints are
  return write_model(family, path, vocab)
