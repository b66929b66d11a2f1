"""Corpus mining (DeepSeekMath 4.2.1.1): fastText math classifier, URL dedup, global top-k selection, domain discovery,
path annotations, iterative rounds, n-gram benchmark decontamination, ArrayRecord/JSONL shards for Grain.

Stage functions work on page records (dicts with 'url' and 'text'); beam_pipeline composes them as Beam transforms;
pipeline.run(config, workdir) is the stage entry point (config.job = "corpus").
"""
from dsmath.corpus.beam_pipeline import (AnnotatedPositives, BudgetPrefixFn, DecontamFn, DedupByUrl, DomainCounts,
                                         MarkSelected, ReadPages, ScoreFn, ScorePages, pipeline_options, run_dedup,
                                         run_final, run_round)
from dsmath.corpus.classifier import (ClassifierParams, load_classifier, normalize_text, score_texts,
                                      train_classifier)
from dsmath.corpus.decontam import (NGramIndex, TokenHasher, benchmark_files, build_index, decontaminate_pages,
                                    decontaminate_text)
from dsmath.corpus.domains import (annotated_positives, domain_table, load_annotations, markdown_domain_table,
                                   math_domains, overlap, should_stop)
from dsmath.corpus.pipeline import CorpusStageConfig, default_config, resolve_config, run
from dsmath.corpus.records import RecordError, read_jsonl_pages, read_pages, read_parquet_pages, read_warc_pages, \
    read_wet_pages
from dsmath.corpus.selection import Budget, count_tokens, rank_key, select_top
from dsmath.corpus.toy import ToyParams, build_toy_crawl
from dsmath.corpus.urls import canonical_url, dedup_pages, url_domain, url_path
