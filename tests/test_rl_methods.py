"""The methods registry's data-source axis (dsmath.rl.methods.DATA_SOURCES): every method names a registered source,
the paper's methods draw theirs as its Table 10 says (DeepSeekMath sec. 5.2.1), and the config checks read the source's
properties."""
import pytest

from dsmath import rl
from dsmath.config import ConfigError
from dsmath.rl.sources import STEPS
from tests.rl_configs import config


def test_every_method_names_a_registered_data_source():
  for name, method in rl.METHODS.items():
    assert method.data in rl.DATA_SOURCES and method.source is rl.DATA_SOURCES[method.data], name
  for name, source in rl.DATA_SOURCES.items():
    assert not (source.online and source.offline), name  # sampled now or once, not both
    assert source.sampled == (source.online or source.offline), name
    assert not source.pairs or source.sampled, name  # pairs are of sampled outputs
    assert source.step in STEPS and source.description, name  # the loop's step on it


# Table 10: SFT q, o ~ P_sft(Q, O); RFT q ~ P_sft(Q), o ~ pi_sft(O|q); DPO o+, o- ~ pi_sft(O|q); Online RFT, PPO and
# GRPO o ~ pi_theta(O|q). "RFT and DPO follow the offline style, while Online RFT and GRPO follow the online style."
@pytest.mark.parametrize("method,online,offline,pairs", [
    ("sft", False, False, False), ("rft", False, True, False), ("dpo", False, True, True),
    ("online_rft", True, False, False), ("ppo", True, False, False), ("grpo", True, False, False)])
def test_data_sources_are_the_papers_table_10(method, online, offline, pairs):
  source = rl.METHODS[method].source
  assert (source.online, source.offline, source.pairs) == (online, offline, pairs)
  assert source.sampled == (method != "sft")  # SFT trains on written solutions; every other method on samples
  assert source.reads_reward == online  # offline samples are selected by the rule grader, not the run's reward
  assert (rl.METHODS[method].reward == "") == (method == "sft")  # Table 10's reward column: "-" for SFT, else rule


def test_config_checks_read_the_data_source():
  with pytest.raises(ConfigError, match="must be >= 2 for DPO pairs"):
    rl.resolve_rl_config(config("dpo_toy", **{"offline.samples_per_question": 1}))
  with pytest.raises(ConfigError, match="rl.method='rft' trains on its offline_samples data.*no effect"):
    rl.resolve_rl_config(config("rft_toy", **{"rl.reward": "orm"}))
  with pytest.raises(ConfigError, match="needs an online method"):
    rl.resolve_rl_config(config("rft_toy", **{"rollout.dynamic_sampling": "on"}))
  assert not rl.resolve_rl_config(config("dpo_toy")).needs_reference  # DPO's pi_ref log-probs are taken offline
  assert rl.resolve_rl_config(config("grpo_toy")).needs_reference
