"""The RL stage's one schema (frozen dataclasses; `dsmath.config` resolves and checks it) with the paper's defaults.

Sections (configs/grpo_toy.py shows a full toy config; configs/grpo_7b.py the paper's 7B run):
  init_from      a finished run (run.json) whose policy, model config and tokenizer RL starts from; "" = a fresh
                 `model` with the task's own tokenizer (toy runs, after rl.sft_warmup_steps of the paradigm's SFT).
  task           the question set (GSM8K / MATH train, the synthetic task, any JSONL), its prompt format and budget.
  rl             the method (a key of dsmath.rl.methods.METHODS) and what it may override: reward, advantage estimator,
                 policy loss; iterations x steps, mu updates per step, grading mode.
  rollout        questions per step, group size G, lengths, temperature, dynamic sampling, tool rounds.
  loss, advantage, reward, reward_model, ppo, offline   the methods' hyper-parameters.
  optimizer      the policy's AdamW (the paper: lr 1e-6 constant, the pre-training betas).
  eval           held-out accuracy on the task's test split during RL (greedy and sampled).
  checkpoint     orbax checkpoints of everything the run needs; exact resume.
  mesh, sharding, distributed   the training substrate's layout (dsmath.train).

Method-dependent defaults are written as -1 / "" and filled once by `resolve_rl_config` from the method's registry
entry (e.g. GSPO's clip epsilon 3e-4, DAPO's eps_high 0.28 and beta 0), so the resolved config that run.json
records holds only concrete values.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Literal, Mapping

from dsmath import config as config_lib
from dsmath.data.synthetic import Difficulty
from dsmath.model import ModelConfig
from dsmath.rl.corruptions import CORRUPTIONS
from dsmath.train.config import DistributedConfig, MeshConfig, OptimizerConfig, ShardingConfig


@dataclasses.dataclass(frozen=True)
class QuestionSource:
  """One question set. kind "gsm8k" / "math": the shared train split for training, the test split held out (paths
  override); "synthetic": task.synthetic; "jsonl": train_path / test_path with configurable fields."""
  kind: Literal["synthetic", "gsm8k", "math", "jsonl"] = "synthetic"
  train_path: str = ""
  test_path: str = ""
  question_field: str = "question"
  answer_field: str = "answer"
  # how the gold answer is read from answer_field: as is, GSM8K's "#### 18", or a solution's last \boxed{}
  answer_format: Literal["plain", "gsm8k", "boxed"] = "plain"
  solution_field: str = ""  # a worked solution (the paradigm's SFT entry); builtins: their answer/solution field
  max_train: int = 0  # 0 = every training question
  max_test: int = 0


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
  """The synthetic arithmetic task (dsmath.data.synthetic) when a source has kind "synthetic"."""
  num_train: int = 2000
  num_test: int = 200
  test_fraction: float = 0.2
  validation_fraction: float = 0.0  # a split carved from train for choosing settings (dsmath.data.synthetic)
  heldout_split: Literal["test", "validation"] = "test"  # what evaluation during RL reads (num_test questions)
  difficulty: Difficulty = config_lib.sub(Difficulty)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  sources: Mapping[str, QuestionSource] = config_lib.field(
      default_factory=lambda: types.MappingProxyType({"synthetic": QuestionSource()}))
  synthetic: SyntheticTask = config_lib.sub(SyntheticTask)
  # Prompt formats of dsmath.data.prompts: zero_shot = the paper's chain-of-thought instruction (\boxed{} answer),
  # plain = question + newline (the synthetic task's SFT format), few_shot, tool (tool-integrated instruction).
  prompt: Literal["zero_shot", "plain", "few_shot", "tool"] = "plain"
  # The prompt as one user turn in the tokenizer's chat template, with the assistant header (as transformers'
  # apply_chat_template(add_generation_prompt=True)); rollouts end at the template's end of turn too.
  chat: bool = False
  num_shots: int = 4
  prompt_budget: int = 0  # prompt tokens at most; 0 = the longest prompt of the task. Longer ones are bad rows.
  on_bad_row: Literal["report", "raise"] = "report"  # report: counted with file:line and left out; raise: stop
  tokenizer: str = ""  # without init_from: a tokenizer path; "" trains one on the synthetic task below
  tokenizer_type: Literal["bpe", "unigram", "char"] = "bpe"
  tokenizer_vocab: int = 384

  def __post_init__(self):
    if not self.sources:
      raise ValueError("task.sources is empty: name at least one question set")


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
  method: str = "grpo"  # a key of dsmath.rl.methods.METHODS
  reward: str = ""  # "" = the method's; a key of dsmath.rl.rewards.REWARDS
  estimator: str = ""  # "" = the method's (and the reward's kind); a key of dsmath.rl.advantages.ESTIMATORS
  policy_loss: str = ""  # "" = the method's; a key of dsmath.rl.losses.POLICY_LOSSES
  grade_mode: Literal["math_verify", "paper"] = "math_verify"
  iterations: int = 1  # Algorithm 1: pi_ref <- pi_theta and a reward-model round per iteration
  steps: int = 100  # per iteration
  mu: int = 1  # policy updates per rollout batch
  grad_accum_steps: int = 1  # micro-batches per update (the batch is split, the step is one optimizer update)
  step_separator: str = "\n"  # what ends a reasoning step (process supervision)
  sft_warmup_steps: int = 0  # without init_from: steps of the paradigm's SFT entry on gold solutions first
  sft_lr: float = 3e-3
  sft_batch: int = 32
  max_consecutive_nonfinite: int = 3

  def __post_init__(self):
    for key in ("iterations", "steps", "mu", "grad_accum_steps", "max_consecutive_nonfinite"):
      if getattr(self, key) < 1:
        raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  prompts_per_step: int = 16  # the paper: a batch of 1024 completions = 16 questions x G 64
  group_size: int = 64  # G
  max_new_tokens: int = 1024
  temperature: float = 1.0
  # DAPO's dynamic sampling: groups whose rewards are all equal are dropped and refilled from the question stream
  dynamic_sampling: Literal["method", "on", "off"] = "method"
  max_refill_batches: int = 4  # refill rounds at most (then the step trains on the groups it has)
  # Completions sampled at once (whole questions: a multiple of the group size); 0 = the whole step's batch. The KV
  # cache holds this many rows, so at 7B scale it decides the rollout's memory; the samples do not depend on it.
  max_rows: int = 0
  # "continuous": max_rows (default `engine.default_slots`) KV cache slots, each refilled with the next completion as
  # soon as its row ends, all of a step's completions in one call (dsmath.sample.continuous); "static": chunks of
  # max_rows rows, each decoded until its longest row ends (the same samples, to float rounding). "auto": continuous
  # when rows can end early and outnumber the slots, or when the step's questions do not split over the data-parallel
  # devices (dsmath.rl.rollout.RolloutSampler.batching). Tool-integrated rollouts are static.
  batching: Literal["auto", "continuous", "static"] = "auto"
  decode_segments: int = 0  # cache windows of the static decode (dsmath.sample.decode_windows); 0 = by length
  # pi_old: the sampler's log-probs (free), or recomputed by teacher forcing at training precision (a forward more;
  # worth it under bf16, where the two differ by more than GSPO's 3e-4 clip; `old_logp_gap` logs the difference)
  recompute_old_logp: bool = False
  # Tool-integrated rollouts (dsmath.sample.tools): a closed python block pauses sampling, the program runs in the
  # evaluation sandbox and its output block is appended (context for the model, never trained on: the loss mask
  # holds the model's own tokens only); tool_rounds programs at most per completion, 0 = no tools. max_new_tokens
  # counts the model's tokens; each output block adds at most tool_output_tokens.
  tool_rounds: int = 0
  tool_output_tokens: int = 256
  tool_timeout_s: float = 5.0
  tool_isolation: Literal["auto", "namespace", "rlimits"] = "auto"
  # <workdir>/rollouts.jsonl: every rollout's text, rule verdict, training reward and the reward model's scores;
  # "learned" = in runs whose reward is a learned reward model (where the verdicts show what the model rewards)
  log_rollouts: Literal["learned", "on", "off"] = "learned"

  def __post_init__(self):
    if self.prompts_per_step < 1 or self.group_size < 1 or self.max_new_tokens < 1:
      raise ValueError("prompts_per_step, group_size and max_new_tokens must be >= 1")
    if self.tool_rounds < 0 or self.tool_output_tokens < 1 or not self.tool_timeout_s > 0:
      raise ValueError("tool_rounds must be >= 0, tool_output_tokens >= 1 and tool_timeout_s > 0")
    if not self.temperature > 0:
      raise ValueError(f"temperature must be > 0, got {self.temperature}")
    if self.max_rows < 0:
      raise ValueError(f"max_rows must be >= 0, got {self.max_rows}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Policy-loss hyper-parameters; -1 / "" = the method's default (dsmath.rl.methods)."""
  clip_eps: float = -1.0  # PPO/GRPO ratio clip (lower side); 0.2 for PPO/GRPO, 3e-4 for GSPO
  clip_eps_high: float = -1.0  # upper side; the method's default (= clip_eps, 0.28 for DAPO, 4e-4 for GSPO)
  beta: float = -1.0  # KL coefficient inside the GRPO objective; 0.04 (the paper), 0 for DAPO
  aggregation: str = ""  # "sequence" (the paper) | "token" (DAPO) | "sequence_sum_norm" (Dr. GRPO)
  max_len: int = 0  # the constant of "sequence_sum_norm"; 0 = rollout.max_new_tokens
  dpo_beta: float = 0.1
  dpo_length_normalize: bool = True
  value_clip: float = 0.2
  # rollout correction (dsmath.rl.losses.rollout_correction): "off", "token" (truncated importance sampling) or
  # "sequence_mask"; needs rollout.recompute_old_logp (the trainer's pi_old beside the sampler's log-probs)
  tis: str = "off"
  tis_cap: float = 2.0


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
  scale_std: bool = True  # GRPO divides by the group std (Dr. GRPO is the estimator that does not)
  eps: float = 1e-4
  ddof: int = 1  # 1: the sample std (as TRL); 0: the population std
  # Process supervision: how step rewards are credited to tokens (a key of dsmath.rl.advantages.CREDIT): "sum" (the
  # paper), "min" (PURE), "clip" / "delta" (Gao et al. 2024); clip_eta is the clip mechanism's threshold.
  credit: str = "sum"
  clip_eta: float = 0.5
  # Diagnosis only: groups whose rule verdicts all agree get zero advantage (reads the rule grader's verdicts, so a
  # run with it is not driven by the learned reward alone)
  zero_unanimous_groups: bool = False


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  unformatted_reward: float = 0.0  # a completion without a final answer in the expected format
  # DAPO's overlong reward shaping: a linear penalty over the last `overlong_buffer` tokens of max_new_tokens and
  # -overlong_penalty for truncated completions; -1 = the method's default (DAPO: max_new_tokens // 4), 0 = off
  overlong_buffer: int = -1
  overlong_penalty: float = 1.0
  # A verifier term beside a learned or process reward: the rule outcome (1 right, 0 wrong) times this weight, added
  # to the outcome reward, or to the last step's reward of a process reward (PURE, Cheng et al. 2025, mixes
  # verifiable rewards into PRM-driven RL this way). 0 = the learned reward alone.
  verifier_weight: float = 0.0
  # Diagnosis only: step_drift x (k - 1) added to the k-th step's process reward (a reward model whose scores drift
  # along a solution, reproduced on the rule step checker)
  step_drift: float = 0.0


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
  """Learned outcome/process reward models (rewards "orm" / "prm"), trained Math-Shepherd style."""
  steps: int = 50  # optimizer steps per reward-model round
  batch: int = 32
  lr: float = 2e-5  # the paper's initial reward-model lr
  replay_fraction: float = 0.1  # iterative RL: share of historical rows in each new round
  # A PRM's step labels: Math-Shepherd's hard (any completion correct) or soft estimate; or "outcome": no step labels,
  # the answer's rule label at the last token only, read at step ends through pool="product" (P(the prefix is right))
  label: Literal["hard", "soft", "outcome"] = "hard"
  questions: int = 32  # training questions sampled per round
  heldout_questions: int = 0  # other training questions whose samples measure the label accuracy; 0 = `questions`
  # Each training question's worked gold solution as one more row labelled right (a PRM: every step good) beside the
  # policy's samples: every question the policy gets wrong then has a (right, wrong) pair to learn the order from, and
  # the model sees right arithmetic for every question. False = the paper's data (the policy's samples only).
  gold_solutions: bool = False
  # Model selection: every select_every steps the round scores samples of select_questions further training
  # questions (disjoint from its training and held-out ones) and keeps the state whose within-question pair accuracy
  # (what GRPO's group comparison reads) is best, instead of the last. 0 = the last state (the paper's).
  select_every: int = 0
  select_questions: int = 256
  samples_per_question: int = 2
  shepherd_completions: int = 4  # completions from each step prefix that estimate its label
  # The training reward read from the model's probability: "probability" (the paper) or "binary" (1 when > 0.5: the
  # model read as a verifier, its calibration ignored); the proxy the run logs is always the probability
  score: Literal["probability", "binary"] = "probability"
  # Weight of the within-question ranking term beside the paper's cross-entropy (dsmath.rl.rewards.
  # within_question_pairs): GRPO compares outputs of one question, so what it needs from a reward model is their order;
  # with cross-entropy alone a model can score labels well by judging the question (hard or easy) instead of the
  # output. 0 = the paper's loss. Batches are then whole questions (samples_per_question rows each).
  pairwise_weight: float = 0.0
  # How the head's per-token logits become the judged probability (dsmath.rl.rewards.pooled_logits): "last" (the paper:
  # the head at the last token for an ORM, at each step end for a PRM) or "product" (a noisy-AND over tokens: right
  # when no token is an error; trained on outcome labels, the loss reaches the token of the wrong step)
  pool: Literal["last", "product"] = "last"
  # Corrupted copies of this share of each round's sampled training rows (dsmath.rl.corruptions: a step dropped, the
  # output's start cut off, the output stopped early), graded by the rule grader like the rest: outputs the policy can
  # drift to under RL and the model would otherwise never see (the toy PRM scored a bare "7}" 0.98). 0 = the paper's
  # data (the policy's samples only).
  corrupted_fraction: float = 0.0
  corruptions: tuple[str, ...] = ("drop_step", "suffix", "prefix")
  # The reward model's body: "" = a copy of the policy's; "base" = the run the policy's init_from run started from
  # (the pre-trained model an SFT policy was fine-tuned from: it has seen right solutions, the SFT policy has learned
  # a careless teacher's); or any run directory with the policy's model config
  init_from: str = ""

  def __post_init__(self):
    if not 0.0 <= self.replay_fraction < 1.0:
      raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
    if not 0.0 <= self.corrupted_fraction <= 1.0:
      raise ValueError(f"corrupted_fraction must be in [0, 1], got {self.corrupted_fraction}")
    if not self.corruptions or set(self.corruptions) - set(CORRUPTIONS):
      raise ValueError(f"corruptions must name some of {sorted(CORRUPTIONS)}, got {self.corruptions}")
    if self.select_every < 0 or (self.select_every and self.select_questions < 1):
      raise ValueError(f"select_every must be >= 0 and select_questions >= 1 when selecting, got {self.select_every} "
                       f"and {self.select_questions}")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  samples_per_question: int = 1
  gamma: float = 1.0
  lam: float = 0.95
  kl_beta: float = 0.04  # PPO puts the KL to pi_ref in the per-token reward
  whiten: bool = False
  value_lr: float = 1e-5


@dataclasses.dataclass(frozen=True)
class OfflineConfig:
  """RFT / DPO: samples drawn once from the initial (SFT) policy."""
  samples_per_question: int = 8
  questions: int = 0  # questions sampled; 0 = rl.steps x rollout.prompts_per_step (every step's worth)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Held-out accuracy on the task's test split through dsmath.eval (`test_accuracy*` metrics)."""
  num_questions: int = 64  # 0 = no held-out evaluation
  every: int = 0  # steps between evaluations (0: only before and after RL)
  greedy: bool = True  # greedy accuracy (`test_accuracy_greedy`)
  samples: int = 1  # sampled accuracy (`test_accuracy_sampled`), this many samples a question (0 = none)
  temperature: float = 0.7  # of the sampled accuracy: the paper's evaluation temperature (Figure 7)
  batch_rows: int = 256


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every: int = 10  # steps between checkpoints (and always at the end and at the end of each iteration)
  keep: int = 2
  async_save: bool = True

  def __post_init__(self):
    if self.every < 1 or self.keep < 1:
      raise ValueError(f"every and keep must be >= 1, got {self.every}, {self.keep}")


def _rl_optimizer() -> OptimizerConfig:
  # the paper's RL optimizer: policy lr 1e-6, constant, no warm-up (section 4.2)
  return OptimizerConfig(peak_lr=1e-6, schedule="constant", warmup_steps=0)


@dataclasses.dataclass(frozen=True)
class RLStageConfig:
  job: Literal["rl"] = "rl"
  seed: int = 0
  workdir: str = ""
  init_from: str = ""
  model: ModelConfig = config_lib.field(default_factory=lambda: ModelConfig.preset("tiny"),
                                        resolve=ModelConfig.resolve, config={"preset": "tiny"})
  task: TaskConfig = config_lib.sub(TaskConfig)
  rl: AlgorithmConfig = config_lib.sub(AlgorithmConfig)
  rollout: RolloutConfig = config_lib.sub(RolloutConfig)
  loss: LossConfig = config_lib.sub(LossConfig)
  advantage: AdvantageConfig = config_lib.sub(AdvantageConfig)
  reward: RewardConfig = config_lib.sub(RewardConfig)
  reward_model: RewardModelConfig = config_lib.sub(RewardModelConfig)
  ppo: PPOConfig = config_lib.sub(PPOConfig)
  offline: OfflineConfig = config_lib.sub(OfflineConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=_rl_optimizer)
  eval: EvalConfig = config_lib.sub(EvalConfig)
  checkpoint: CheckpointConfig = config_lib.sub(CheckpointConfig)
  mesh: MeshConfig = config_lib.sub(MeshConfig)
  sharding: ShardingConfig = config_lib.sub(ShardingConfig)
  distributed: DistributedConfig = config_lib.sub(DistributedConfig)
  progress: bool = True  # a progress bar of RL steps and reward-model rounds (quiet under CI)
  debug_step_sleep_s: float = 0.0  # test knob: sleep after each step so a kill lands mid-run (changes no result)


def default_config():
  """The ConfigDict every RL config file starts from (all keys, for command-line overrides)."""
  return config_lib.config_dict(RLStageConfig)
