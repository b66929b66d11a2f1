"""Methods as data: every method of the unified paradigm (paper sec. 5.2.1, Table 10) and the variants beyond it is
one registry entry naming its data source (a key of DATA_SOURCES), reward, advantage estimator, policy loss and the
models it needs.

  method      data source                       reward        estimator (GC)       policy loss   models
  sft         gold solutions (P_sft)            -             one (GC = 1)         sft           -
  rft         k samples of the SFT model, once  rule          correct (Eq. 10)     sft           -
  online_rft  G samples of the current policy   rule          correct (Eq. 10)     sft           -
  dpo         (o+, o-) pairs of the SFT model   rule          -                    dpo (Eq. 14)  reference (SFT)
  ppo         1 sample of the current policy    rule          gae (Eq. 18)         ppo           value, reference
  grpo        G samples of the current policy   rule          grpo_outcome         grpo (Eq.21)  reference
  grpo_ps     G samples of the current policy   prm           grpo_process         grpo          reference, PRM
  dr_grpo     as grpo                           rule          dr_grpo (no std)     dr_grpo       reference
  dapo        as grpo + dynamic sampling        rule+overlong grpo_outcome         dapo          - (beta 0)
  gspo        as grpo                           rule          grpo_outcome         gspo          reference
  rloo        as grpo                           rule          rloo                 grpo          reference

A process reward (step_check, prm) switches a method's outcome estimator to its process form (`process_estimator`),
so GRPO with process supervision is first-class: `rl.method = "grpo"` with `rl.reward = "prm"` is GRPO+PS.

`resolve_rl_config(config) -> RLRun` resolves the stage config once: the schema checks every key and type, the
method's entry fills what the config left to it (-1 / ""), and the result holds only concrete values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from dsmath import config as config_lib
from dsmath.config import ConfigError
from dsmath.rl import advantages, losses, rewards
from dsmath.rl.config import RLStageConfig


@dataclasses.dataclass(frozen=True)
class DataSource:
  """What a method trains on (Table 10's data source column) and what follows from it; the config checks and the
  loop read these properties, never the source's name."""
  description: str
  step: str  # how the loop takes a step on it: a key of dsmath.rl.sources.STEPS
  online: bool = False  # samples the current policy every step: dynamic sampling, the overlong penalty, the verifier
  #                       term, tool rounds and a kept reference model (pi_ref read each step) apply to it
  offline: bool = False  # sampled once from the initial policy before step 0 (<run>/offline_data.npz)
  pairs: bool = False  # (chosen, rejected) pairs of outputs of one question: needs >= 2 samples a question
  reads_reward: bool = False  # the run's reward scores its outputs (offline sources select with the rule grader)

  @property
  def sampled(self) -> bool:
    """Trains on outputs a policy wrote (online or offline); False: written gold solutions, nothing sampled."""
    return self.online or self.offline


DATA_SOURCES: dict[str, DataSource] = {
    "gold": DataSource("the questions' gold solutions (q, o ~ P_sft), nothing sampled", "gold"),
    "offline_samples": DataSource("samples of the initial (SFT) policy drawn once, the correct ones kept by the rule "
                                  "grader", "offline", offline=True),
    "offline_pairs": DataSource("(correct, incorrect) pairs of samples of the initial (SFT) policy drawn once, split "
                                "by the rule grader", "offline", offline=True, pairs=True),
    "policy": DataSource("samples of the current policy drawn every step, scored by the run's reward", "rollout",
                         online=True, reads_reward=True),
}


@dataclasses.dataclass(frozen=True)
class Method:
  data: str  # a key of DATA_SOURCES (the name configs and logs show; the code reads `source`)
  reward: str  # a key of rewards.REWARDS ("" = none)
  estimator: str  # a key of advantages.ESTIMATORS ("" = none, DPO)
  process_estimator: str  # the estimator under a process reward ("" = the method takes none)
  policy_loss: str  # a key of losses.POLICY_LOSSES
  samples: str  # the config key giving samples per question ("" = one gold solution)
  value_model: bool = False
  dynamic_sampling: bool = False
  loss: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # deviations from losses.LossConfig's defaults
  overlong_buffer_fraction: float = 0.0  # DAPO: the shaping buffer as a fraction of max_new_tokens

  @property
  def source(self) -> DataSource:
    return DATA_SOURCES[self.data]


METHODS: dict[str, Method] = {
    "sft": Method("gold", "", "one", "", "sft", ""),
    "rft": Method("offline_samples", "rule", "correct", "", "rft", "offline.samples_per_question"),
    "online_rft": Method("policy", "rule", "correct", "", "online_rft", "rollout.group_size"),
    "dpo": Method("offline_pairs", "rule", "", "", "dpo", "offline.samples_per_question"),
    "ppo": Method("policy", "rule", "gae", "", "ppo", "ppo.samples_per_question", value_model=True),
    "grpo": Method("policy", "rule", "grpo_outcome", "grpo_process", "grpo", "rollout.group_size"),
    "grpo_ps": Method("policy", "prm", "grpo_outcome", "grpo_process", "grpo", "rollout.group_size"),
    "dr_grpo": Method("policy", "rule", "dr_grpo", "dr_grpo_process", "dr_grpo", "rollout.group_size"),
    "dapo": Method("policy", "rule", "grpo_outcome", "grpo_process", "dapo", "rollout.group_size",
                   dynamic_sampling=True, loss={"clip_eps_high": 0.28, "beta": 0.0, "aggregation": "token"},
                   overlong_buffer_fraction=0.25),
    "gspo": Method("policy", "rule", "grpo_outcome", "", "gspo", "rollout.group_size",
                   loss={"clip_eps": 3e-4, "clip_eps_high": 4e-4, "beta": 0.0}),
    "rloo": Method("policy", "rule", "rloo", "", "grpo", "rollout.group_size"),
}


# estimators whose baseline is the other samples of the same question
_GROUP_ESTIMATORS = ("grpo_outcome", "grpo_process", "grpo_process_relative", "dr_grpo", "dr_grpo_process", "rloo")


@dataclasses.dataclass(frozen=True)
class RLRun:
  """The resolved RL stage: the checked config plus what the method decided, all concrete."""
  config: RLStageConfig
  method: Method
  reward: str
  estimator: str
  policy_loss: str
  loss: losses.LossConfig
  samples_per_question: int
  dynamic_sampling: bool
  overlong_buffer: int
  needs_reference: bool
  needs_value: bool
  needs_reward_model: bool

  def as_dict(self) -> dict:
    return {"config": config_lib.to_dict(self.config), "method": self.config.rl.method, "reward": self.reward,
            "estimator": self.estimator, "policy_loss": self.policy_loss, "loss": dataclasses.asdict(self.loss),
            "samples_per_question": self.samples_per_question, "dynamic_sampling": self.dynamic_sampling,
            "overlong_buffer": self.overlong_buffer,
            "models": {"reference": self.needs_reference, "value": self.needs_value,
                       "reward_model": self.needs_reward_model}}


def _choose(given: str, default: str, registry: Mapping, key: str) -> str:
  name = given or default
  if name not in registry:
    raise ConfigError(f"{key}={name!r} is unknown; valid: {sorted(registry)}")
  return name


def resolve_rl_config(config: Any) -> RLRun:
  """The stage config (ConfigDict, dict or RLStageConfig) checked against the schema and completed by the method."""
  cfg = config if isinstance(config, RLStageConfig) else config_lib.resolve(RLStageConfig, config)
  rl = cfg.rl
  if rl.method not in METHODS:
    raise ConfigError(f"config.rl.method={rl.method!r} is unknown; valid: {sorted(METHODS)}")
  method = METHODS[rl.method]
  reward = _choose(rl.reward, method.reward, rewards.REWARDS, "config.rl.reward") if (rl.reward or method.reward) \
      else ""
  process = bool(reward) and rewards.REWARDS[reward].process
  if process and not method.process_estimator:
    raise ConfigError(f"config.rl.reward={reward!r} is a process reward; rl.method={rl.method!r} takes outcome rewards "
                      f"only (methods with process supervision: "
                      f"{sorted(n for n, m in METHODS.items() if m.process_estimator)})")
  if rl.estimator and not method.estimator:
    raise ConfigError(f"config.rl.estimator={rl.estimator!r}: rl.method={rl.method!r} uses no advantage estimator")
  estimator = _choose(rl.estimator, method.process_estimator if process else method.estimator,
                      advantages.ESTIMATORS, "config.rl.estimator") if (rl.estimator or method.estimator) else ""
  if estimator and advantages.ESTIMATORS[estimator].process != process:
    raise ConfigError(f"config.rl.estimator={estimator!r} reads {'step' if not process else 'outcome'} rewards but "
                      f"the reward {reward!r} gives {'step' if process else 'outcome'} rewards")
  if estimator and advantages.ESTIMATORS[estimator].values != method.value_model:
    raise ConfigError(f"config.rl.estimator={estimator!r} {'needs' if not method.value_model else 'has no use for'} "
                      f"a value model, which rl.method={rl.method!r} {'does not keep' if not method.value_model else 'trains'}")
  source = method.source
  if not source.reads_reward and (rl.reward and rl.reward != method.reward):
    raise ConfigError(f"config.rl.reward={rl.reward!r}: rl.method={rl.method!r} trains on its {method.data} data, "
                      f"{source.description}; a reward has no effect on it")
  policy_loss = _choose(rl.policy_loss, method.policy_loss, losses.POLICY_LOSSES, "config.rl.policy_loss")
  if losses.LOSS_DATA.get(policy_loss, "policy") != losses.LOSS_DATA.get(method.policy_loss, "policy"):
    raise ConfigError(f"config.rl.policy_loss={policy_loss!r} trains on {losses.LOSS_DATA.get(policy_loss, 'policy')} "
                      f"rows; rl.method={rl.method!r}'s data source gives "
                      f"{losses.LOSS_DATA.get(method.policy_loss, 'policy')} rows")
  given = {k: v for k, v in dataclasses.asdict(cfg.loss).items()
           if not (v == -1 or v == "" or (k == "max_len" and v == 0))}
  fixed = losses.FIXED_AGGREGATION.get(policy_loss)
  if fixed and given.get("aggregation", fixed) != fixed:
    raise ConfigError(f"config.loss.aggregation={given['aggregation']!r}: the {policy_loss!r} loss is defined by its "
                      f"{fixed!r} aggregation (leave loss.aggregation empty)")
  loss_kwargs = {**dict(method.loss), **({"aggregation": fixed} if fixed else {}), **given}
  loss_kwargs.setdefault("max_len", cfg.rollout.max_new_tokens)
  try:
    loss = losses.LossConfig(**loss_kwargs)
  except ValueError as e:
    raise ConfigError(f"config.loss: {e}") from None
  samples = 1
  if method.samples:
    section, key = method.samples.split(".")
    samples = getattr(getattr(cfg, section), key)
    if samples < 1:
      raise ConfigError(f"config.{method.samples} must be >= 1, got {samples}")
  if source.pairs and samples < 2:
    raise ConfigError(f"config.{method.samples} must be >= 2 for DPO pairs, got {samples}")
  if estimator in _GROUP_ESTIMATORS and samples < 2:
    raise ConfigError(f"config.{method.samples}={samples}: a group-relative advantage needs >= 2 samples a question")
  dynamic = {"method": method.dynamic_sampling, "on": True, "off": False}[cfg.rollout.dynamic_sampling]
  if dynamic and not source.online:
    raise ConfigError(f"config.rollout.dynamic_sampling='on' needs an online method, not rl.method={rl.method!r}")
  if dynamic and (samples < 2 or process):
    raise ConfigError("config.rollout.dynamic_sampling keeps groups whose outcome rewards differ: it needs >= 2 "
                      f"samples a question (has {samples}) and an outcome reward (has {reward!r})")
  buffer = cfg.reward.overlong_buffer
  if buffer < 0:
    buffer = int(method.overlong_buffer_fraction * cfg.rollout.max_new_tokens)
  if buffer >= cfg.rollout.max_new_tokens:
    raise ConfigError(f"config.reward.overlong_buffer={buffer} must be < rollout.max_new_tokens="
                      f"{cfg.rollout.max_new_tokens}")
  if buffer and (process or not source.online):
    raise ConfigError(f"config.reward.overlong_buffer={buffer}: the overlong penalty shapes outcome rewards of "
                      f"sampled outputs; rl.method={rl.method!r} with reward {reward!r} has none to shape "
                      f"(set reward.overlong_buffer=0)")
  if cfg.reward.verifier_weight and not (source.online and (process or (reward and rewards.REWARDS[reward].learned))):
    raise ConfigError(f"config.reward.verifier_weight={cfg.reward.verifier_weight}: the verifier term adds the rule "
                      f"outcome to a learned or process reward of sampled outputs; rl.method={rl.method!r} with "
                      f"reward {reward!r} has none (set reward.verifier_weight=0)")
  if reward == "prm" and cfg.reward_model.label == "outcome" and cfg.reward_model.pool != "product":
    raise ConfigError(f"config.reward_model.label='outcome' trains a PRM on the answer's label at its last token; its "
                      f"step scores mean P(the prefix is right) only with config.reward_model.pool='product', got "
                      f"{cfg.reward_model.pool!r}")
  if cfg.reward.step_drift and not process:
    raise ConfigError(f"config.reward.step_drift={cfg.reward.step_drift} shifts process (step) rewards; the reward "
                      f"{reward!r} gives one reward per output")
  if cfg.advantage.credit not in advantages.CREDIT:
    raise ConfigError(f"config.advantage.credit={cfg.advantage.credit!r} is unknown; valid: "
                      f"{sorted(advantages.CREDIT)}")
  if cfg.advantage.credit != "sum" and not (estimator and advantages.ESTIMATORS[estimator].process):
    raise ConfigError(f"config.advantage.credit={cfg.advantage.credit!r} assigns step rewards to tokens; the estimator "
                      f"{estimator!r} reads outcome rewards (use a process reward, e.g. rl.reward='prm')")
  if cfg.advantage.zero_unanimous_groups and not (estimator in _GROUP_ESTIMATORS and samples > 1):
    raise ConfigError("config.advantage.zero_unanimous_groups zeroes groups of samples of one question; "
                      f"the estimator {estimator!r} with {samples} sample(s) a question has none")
  if loss.tis != "off" and (not cfg.rollout.recompute_old_logp or policy_loss not in ("grpo", "dapo", "dr_grpo")):
    raise ConfigError(f"config.loss.tis={loss.tis!r} weighs the GRPO-family policy gradient by the trainer's pi_old "
                      f"over the sampler's log-probs: it needs config.rollout.recompute_old_logp=True and a loss of "
                      f"grpo / dapo / dr_grpo (has {policy_loss!r})")
  _check_tools(cfg, rl.method, method, reward)
  # pi_ref is kept only where the step reads it: DPO's reference log-probs are computed once, offline.
  needs_ref = source.online and (losses.reads_reference(policy_loss, loss) or
                                 (method.value_model and cfg.ppo.kl_beta > 0))
  return RLRun(config=cfg, method=method, reward=reward, estimator=estimator, policy_loss=policy_loss, loss=loss,
               samples_per_question=samples, dynamic_sampling=dynamic, overlong_buffer=buffer,
               needs_reference=needs_ref, needs_value=method.value_model,
               needs_reward_model=bool(reward) and rewards.REWARDS[reward].learned)


def _check_tools(cfg: RLStageConfig, name: str, method: Method, reward: str) -> None:
  """Tool-integrated rollouts: the tool prompt needs its programs run, and the tool rows (model tokens with output
  blocks between them) are trained by the online methods on rule outcome rewards. PPO's GAE, step rewards and the
  reward models' and offline samplers' rows assume completions the model wrote whole. Gold-solution methods (the
  paradigm's SFT, e.g. rl.sft_warmup_steps) sample nothing: tool rounds only reach their held-out evaluation."""
  rounds = cfg.rollout.tool_rounds
  r = rewards.REWARDS[reward] if reward else None
  source = method.source
  runs_tools = source.online and not method.value_model and r is not None and not (r.process or r.learned)
  if cfg.task.prompt == "tool" and not rounds:
    if runs_tools or not source.sampled:
      raise ConfigError("config.task.prompt='tool' asks the model to write python blocks whose outputs it then reads: "
                        "set config.rollout.tool_rounds >= 1 so rollouts and held-out evaluation run them in the "
                        "sandbox, or choose another prompt format")
    raise ConfigError(f"config.task.prompt='tool': rl.method={name!r} with reward {reward!r} samples without running "
                      "the model's programs (tool rounds train online methods without a value model on rule outcome "
                      "rewards): choose another prompt format, or such a method with config.rollout.tool_rounds >= 1")
  if rounds and not runs_tools and source.sampled:
    raise ConfigError(f"config.rollout.tool_rounds={rounds}: tool-integrated rollouts train online methods without a "
                      f"value model on rule outcome rewards; rl.method={name!r} with reward {reward!r} is not one "
                      f"(set rollout.tool_rounds=0, or use e.g. grpo, dr_grpo, dapo, gspo, rloo, online_rft)")
