"""Grid expansion of sweep configs: product of axes, stage targeting, placeholders, errors."""
import pytest

from dsmath.sweep import expand, format_value, setup_stages


def _config():
  return {
      "setup": [{"name": "data", "config": "configs/table6_data.py", "module": "experiments.run"}],
      "stages": [
          {"name": "a", "config": "c.py:a", "overrides": {"data.tokenizer.path": "{data}/tok.model"}},
          {"name": "b", "config": "c.py:b", "overrides": {"init_from": "{a}", "train.total_steps": 5}},
      ],
      "axes": [
          {"name": "arm", "levels": [{"name": "x", "set": {}},
                                     {"name": "y", "set": {"a:config": "d.py:a", "b/optimizer.peak_lr": 0.1}},
                                     {"name": "z", "set": {"a:enabled": False, "b/init_from": ""}}]},
          {"name": "seed", "values": [0, 1], "keys": ["a/seed", "b/seed"]},
      ],
  }


def test_expand_product_order_and_overrides(tmp_path):
  cells = expand(_config(), tmp_path)
  assert [c.name for c in cells] == [f"arm={a}__seed={s}" for a in "xyz" for s in (0, 1)]
  y1 = cells[3]
  a, b = y1.stages
  assert a.config == "d.py:a" and dict(a.overrides) == {"data.tokenizer.path": f"{tmp_path}/_setup/data/tok.model",
                                                        "seed": 1}
  assert dict(b.overrides) == {"init_from": f"{tmp_path}/arm=y__seed=1/a", "train.total_steps": 5,
                               "optimizer.peak_lr": 0.1, "seed": 1}
  assert b.workdir == f"{tmp_path}/arm=y__seed=1/b"
  cmd = b.command("python")
  assert cmd[:4] == ["python", "-m", "experiments.run", "--config=c.py:b"]
  assert "--config.optimizer.peak_lr=0.1" in cmd and cmd[-1] == f"--workdir={tmp_path}/arm=y__seed=1/b"


def test_disabled_stage_and_setup(tmp_path):
  z0 = expand(_config(), tmp_path)[4]
  assert not z0.stages[0].enabled and dict(z0.stages[1].overrides)["init_from"] == ""
  (setup,) = setup_stages(_config(), tmp_path)
  assert setup.command("py") == ["py", "-m", "experiments.run", "--config=configs/table6_data.py",
                                 f"--workdir={tmp_path}/_setup/data"]


def test_placeholder_of_disabled_stage_fails(tmp_path):
  cfg = _config()
  cfg["axes"][0]["levels"][2]["set"] = {"a:enabled": False}  # b still points at {a}
  with pytest.raises(KeyError, match=r"unknown placeholder \{a\}"):
    expand(cfg, tmp_path)


@pytest.mark.parametrize("mutate, error", [
    (lambda c: c["axes"][0]["levels"][1]["set"].update({"nostage/seed": 1}), "names stage 'nostage'"),
    (lambda c: c["axes"][0]["levels"][1]["set"].update({"seed": 1}), "must be '<stage>/<config key>'"),
    (lambda c: c["axes"][1].pop("keys"), "keys is empty"),
    (lambda c: c["stages"][0].update({"confg": "x"}), "unknown key"),
    (lambda c: c["axes"][0]["levels"].append({"name": "x", "set": {}}), "duplicate level names"),
])
def test_bad_configs_fail_with_clear_errors(tmp_path, mutate, error):
  cfg = _config()
  mutate(cfg)
  with pytest.raises((KeyError, ValueError), match=error):
    expand(cfg, tmp_path)


def test_format_value_parses_back_with_config_flags():
  assert format_value(True) == "true" and format_value(3) == "3" and format_value("a b") == "a b"
  assert format_value([1, 2]) == "(1,2)" and format_value([4]) == "(4,)"
