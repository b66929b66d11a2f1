"""One train loop for pre-training and SFT (and the step RL reuses): AdamW + the paper's schedules, a generic
jitted/sharded/donating step over any `loss_fn(params, batch, rng) -> (loss, metrics)`, orbax checkpoints with exact
resume, metrics (JSONL, TensorBoard, MFU), and the stage entry point `run(config, workdir) -> dict`."""
from dsmath.train.checkpoint import Checkpointer, load_params, resolve_checkpoint, save_params
from dsmath.train.config import (DistributedConfig, MeshConfig, OptimizerConfig, ShardingConfig,
                                 TokenizerTrainingConfig, TrainLoopConfig, TrainStageConfig, default_config,
                                 resolve_config)
from dsmath.train.loop import ITERATORS, prepare_tokenizer, run, train_loop
from dsmath.train.loss import LossFn, masked_token_mean_nll, next_token_loss
from dsmath.train.metrics import (MetricWriter, flops_per_step, flops_per_token, measure_peak_flops, mfu,
                                  non_embedding_params, read_metrics)
from dsmath.train.optimizer import SCHEDULES, decay_mask, make_optimizer, make_schedule, multistep_schedule
from dsmath.train.step import (TrainStep, abstract_state, build_step_fn, init_state, make_train_step, new_state,
                               state_shardings)
