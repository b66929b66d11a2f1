"""Tokenizers, the Grain input pipeline (mixture, packing, sharding, resumable state) and SFT data.

Batches are dicts of numpy arrays: inputs, targets, segment_ids, positions [B, T] int32 and loss_mask [B, T] float32
(see dsmath.data.pipeline). config.data's schema is dsmath.data.config.DataConfig.
"""
from dsmath.data.config import (PAPER_PRETRAIN_WEIGHTS, DataConfig, SourceConfig, TokenizerConfig, load_config_file,
                                resolve_data_config, resolve_source)
from dsmath.data.pipeline import (BATCH_KEYS, batch_stats, builtin_sft_sources, make_pretrain_iterator,
                                  make_sft_iterator, pack_and_batch, packing_efficiency, pretrain_dataset,
                                  pretrain_documents, sft_dataset, sft_examples)
from dsmath.data.sft import (BLOCK_CLOSE, BUILTIN_SFT_SOURCES, CODE_OPEN, INSTRUCTIONS, OUTPUT_OPEN, SFT_FORMATTERS,
                             TEMPLATES, Template, example_segments, response_segments)
from dsmath.data.sources import FORMATTERS, RecordError, RecordSource, expand_paths, open_source, resolve_path
from dsmath.data.chat import ChatTemplate
from dsmath.data.tokenizer import (HFTokenizer, SentencePieceTokenizer, Tokenizer, bos_prefix, load_tokenizer,
                                   prompt_ids, train_sentencepiece, train_sentencepiece_from_sources)
