"""DeepSeekMath 7B continued pre-training (paper section 2.3): from DeepSeek-Coder-Base-v1.5 7B, 500B tokens.

Placeholders to replace (paths may be gs://...; anything orbax/etils can open for checkpoints):
  init_from            the dsmath run of DeepSeek-Coder-Base-v1.5 7B made by configs/hf_import_7b.py (job
                       "hf_import"); its run.json gives the model config (bf16 compute, full remat) and DeepSeek's
                       tokenizer.json (byte-level BPE, 100k vocab), so neither is repeated here.
  data.sources.*.path  the user's shards of each mixture component (globs of JSONL / Parquet / ArrayRecord with a
                       `text` field): the DeepSeekMath Corpus (120B tokens mined by configs/corpus_*), AlgebraicStack,
                       arXiv, GitHub code, natural language (Common Crawl).
The mixture is the paper's 56 / 4 / 10 / 20 / 10. Optimizer: AdamW(0.9, 0.95), weight decay 0.1, clip 1.0,
multi-step schedule (2000 warm-up steps to 4.2e-4, x0.316 after 80% and x0.1 after 90% of training). The paper's
batch is 10M tokens: 2432 rows x 4096 = 9.96M tokens; 50,000 steps = 498B tokens.
"""
import ml_collections

from dsmath.data import PAPER_PRETRAIN_WEIGHTS
from dsmath.train.config import default_config

BUCKET = "gs://YOUR_BUCKET/deepseekmath"  # placeholder

SHARDS = {
    "math": f"{BUCKET}/deepseekmath_corpus/*.array_record",
    "algebraic_stack": f"{BUCKET}/algebraic_stack/*.array_record",
    "arxiv": f"{BUCKET}/arxiv/*.array_record",
    "code": f"{BUCKET}/github_code/*.array_record",
    "natural_language": f"{BUCKET}/natural_language/*.array_record",
}


def get_config() -> ml_collections.ConfigDict:
  c = default_config("pretrain")
  c.workdir = f"{BUCKET}/runs/pretrain_7b"
  c.init_from = f"{BUCKET}/checkpoints/deepseek-coder-7b-base-v1.5"
  c.data.sources = {name: {"path": SHARDS[name], "text_field": "text", "weight": w}
                    for name, w in PAPER_PRETRAIN_WEIGHTS.items()}
  c.data.seq_len = 4096
  c.data.batch_size = 2432
  c.data.seed = 0
  c.data.num_workers = 8
  c.mesh.shape = (1, -1, 1)  # FSDP over every chip
  # optimizer: the paper's (dsmath.train.config.OptimizerConfig's defaults), spelled out for the record.
  c.optimizer.peak_lr = 4.2e-4
  c.optimizer.schedule = "multistep"
  c.optimizer.warmup_steps = 2000
  c.optimizer.decay_boundaries = (0.8, 0.9)
  c.optimizer.decay_factors = (0.316, 0.1)
  c.optimizer.b1, c.optimizer.b2, c.optimizer.weight_decay, c.optimizer.grad_clip = 0.9, 0.95, 0.1, 1.0
  c.train.total_steps = 50_000
  c.train.grad_accum_steps = 1
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.log_every = 10
  return c
