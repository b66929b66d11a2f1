"""The RL plan (dsmath.rl.plan) of the 7B RL config at a reduced width on 4 simulated devices: the resident state is
exactly the models each method needs, every phase the step runs is compiled, the peak is resident + the largest
phase, the rollout prefills each prompt once and decodes through a KV cache of rollout.max_rows slots (also with fewer
prompts than data-parallel devices); and the tables `experiments.plan` prints. The Qwen2.5-Math GRPO config (q/k/v
biases, tied embeddings, the rule reward: no reward model) plans the same way."""
import json
import os
import subprocess
import sys

import pytest

from dsmath.model import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=2,
             head_dim=32)
COMMON = dict(SMALL={f"model.{k}": v for k, v in SMALL.items()}, OTHER={
    "task.prompt_budget": 16, "rollout.max_new_tokens": 16, "rl.grad_accum_steps": 2, "rollout.max_rows": 8,
    "reward_model.batch": 8, "mesh.shape": (1, 4, 1)})
METHODS = {"grpo": {"rl.method": "grpo", "rollout.prompts_per_step": 4, "rollout.group_size": 4},
           "ppo": {"rl.method": "ppo", "rollout.prompts_per_step": 16},  # PPO: one sample a question, 16 rows too
           "qwen": {"rollout.prompts_per_step": 4, "rollout.group_size": 4},
           # one question x G 16 on 4 data-parallel devices, a cache of 16 slots: its KV rows go to every device
           "grpo_one_prompt": {"rl.method": "grpo", "rollout.prompts_per_step": 1, "rollout.group_size": 16,
                               "rollout.max_rows": 16}}
CONFIGS = {"qwen": "configs.grpo_qwen2_5_math_1_5b"}  # the rest: configs.grpo_7b

PLAN = r"""
import dataclasses, json, sys
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", 4)
import importlib
from dsmath.model import sharding
from dsmath.rl import plan, resolve_rl_config
out = {}
for name, (module, overrides) in json.loads(sys.argv[1]).items():
  c = importlib.import_module(module).get_config()
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  run = resolve_rl_config(c)
  p = plan.plan_rl(run, run.config.model, sharding.make_mesh((1, 4, 1), jax.devices()))
  out[name] = dict(resident=p.resident, phases=[dataclasses.asdict(ph) | {"extra": ph.extra_bytes} for ph in p.phases],
                   peak=p.peak_bytes, rows=p.rows, slots=p.rollout_slots, prefill=p.prefill_prompts,
                   cache=p.rollout_cache_bytes, table=plan.table([p]), details=plan.phase_details(p))
print(json.dumps(out))
"""


def _env():
  return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


@pytest.fixture(scope="module")
def plans():
  runs = {m: (CONFIGS.get(m, "configs.grpo_7b"), {**COMMON["SMALL"], **COMMON["OTHER"], **o})
          for m, o in METHODS.items()}
  proc = subprocess.run([sys.executable, "-c", PLAN, json.dumps(runs)], cwd=ROOT, capture_output=True, text=True,
                        timeout=600, env=_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_rl_plan_holds_each_models_state_and_compiles_every_phase(plans, method):
  p = plans[method]
  n = ModelConfig(**SMALL).num_params()
  norms = (2 * SMALL["num_layers"] + 1) * SMALL["hidden_size"]  # RMSNorm scales: replicated, whole on each device
  params = (n - norms) * 4 // 4 + norms * 4  # float32, the matrices over 4 fsdp shards
  assert p["rows"] == 16
  assert p["resident"]["policy params"] == params
  assert 0 <= p["resident"]["policy AdamW state"] - 2 * params <= 64  # AdamW's two moments + optax's step counters
  assert p["resident"]["reference params"] == params
  heads = ["reward model"] + (["value model"] if method == "ppo" else [])
  assert sorted(p["resident"]) == sorted(["policy params", "policy AdamW state", "reference params"] +
                                         [f"{h} {part}" for h in heads for part in ("params", "AdamW state")])
  for h in heads:  # a scalar-head model: the policy's params as its body and a replicated [H] + [] head
    assert p["resident"][f"{h} params"] == params + (SMALL["hidden_size"] + 1) * 4, h
    assert 0 <= p["resident"][f"{h} AdamW state"] - 2 * p["resident"][f"{h} params"] <= 64
  names = [ph["name"] for ph in p["phases"]]
  want = ["rollout: prefill", "rollout: decode (KV cache)", "reference log-probs", "reward-model scores"]
  want += ["value-model scores", "policy update", "value-model update"] if method == "ppo" else ["policy update"]
  assert names == want
  for ph in p["phases"]:
    assert ph["temp_bytes"] > 0, ph
  assert p["peak"] == sum(p["resident"].values()) + max(ph["extra"] for ph in p["phases"])


@pytest.mark.parametrize("method, prompts, slots", [("grpo", 4, 8), ("ppo", 16, 8), ("grpo_one_prompt", 4, 16)])
def test_rollout_prefills_each_prompt_once_and_sizes_the_cache_by_slots(plans, method, prompts, slots):
  p = plans[method]
  assert (p["rows"], p["prefill"], p["slots"]) == (16, prompts, slots)  # 1 question: padded to the 4 devices
  # k and v of every layer: slots x (16 prompt + 16 new tokens) x KV heads x head_dim in bfloat16 (the 7B config's
  # compute dtype), plus the int32 segment ids and positions of each slot, over the 4 devices
  kv = 2 * SMALL["num_layers"] * SMALL["num_kv_heads"] * SMALL["head_dim"] * 2
  assert p["cache"] == slots * 32 * (kv + 2 * 4) // 4
  decode = next(ph for ph in p["phases"] if ph["name"] == "rollout: decode (KV cache)")
  assert decode["temp_bytes"] >= p["cache"]


def test_grpo_needs_less_than_ppo_by_the_value_model(plans):
  # the paper's point (sec. 4.1): GRPO drops PPO's value model, its AdamW state and its forward and update
  g, p = plans["grpo"]["resident"], plans["ppo"]["resident"]
  assert sum(p.values()) - sum(g.values()) == p["value model params"] + p["value model AdamW state"]


def test_plan_tables(plans):
  # what `python -m experiments.plan --config configs/grpo_7b.py` prints for each mesh
  table, details = plans["ppo"]["table"], plans["ppo"]["details"]
  assert table.startswith("| per device | mesh (1, 4, 1) |")
  for row in ("| completions x (prompt + new tokens) | 16 x (16 + 16) |", "| resident: value model AdamW state |",
              "| + value-model update (extra: args + out - donated + scratch) |", "| **peak estimate**",
              "| fits TPU v5p (95 GiB) | yes |", "| fits H100 80GB | yes |"):
    assert row in table, row
  assert [line.split(" | ")[0] for line in details.splitlines()[2:]] == [
      "| " + ph["name"] for ph in plans["ppo"]["phases"]]


def test_qwen_grpo_plan_holds_the_policy_and_reference_only(plans):
  """Rule reward: no reward model. The tied head is the embedding (no [H, V] head); the q/k/v biases are sharded
  over the tensor axis only, so whole on each of the 4 fsdp devices, as the norm scales."""
  p = plans["qwen"]
  cfg = ModelConfig(**SMALL, qkv_bias=True, tie_embeddings=True)
  n = cfg.num_params()
  assert n == ModelConfig(**SMALL).num_params() - SMALL["vocab_size"] * SMALL["hidden_size"] + SMALL["num_layers"] * (
      (SMALL["num_heads"] + 2 * SMALL["num_kv_heads"]) * SMALL["head_dim"])
  whole = (2 * SMALL["num_layers"] + 1) * SMALL["hidden_size"] + SMALL["num_layers"] * (
      SMALL["num_heads"] + 2 * SMALL["num_kv_heads"]) * SMALL["head_dim"]
  params = (n - whole) * 4 // 4 + whole * 4
  assert sorted(p["resident"]) == ["policy AdamW state", "policy params", "reference params"]
  assert p["resident"]["policy params"] == p["resident"]["reference params"] == params
  assert [ph["name"] for ph in p["phases"]] == ["rollout: prefill", "rollout: decode (KV cache)",
                                                 "reference log-probs", "policy update"]
  assert p["peak"] == sum(p["resident"].values()) + max(ph["extra"] for ph in p["phases"])
