"""Shared test setup: JAX on the CPU for the whole suite (the tests assert bitwise equality and 1e-5 agreement of
CPU float32 programs; the subprocesses they start inherit the setting), one persistent XLA compilation cache for the
session, its subprocesses and this process (identical programs compiled by different runs compile once), and the
shared RL parent run."""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"  # before jax is imported: a GPU or TPU on the machine never changes a result

import jax  # noqa: E402
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for configs/


def pytest_xdist_auto_num_workers(config):
  """Workers for `-n auto` (pyproject's addopts): two where this process may run on two cores or more (on a 2-core
  VM: 970 s against 1542.6 s in one process), none on one core, where two workers only share it (README). The
  environment variable PYTEST_XDIST_AUTO_NUM_WORKERS overrides it."""
  if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
    return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
  return 2 if len(os.sched_getaffinity(0)) >= 2 else 0


# The test files that take longest (seconds of tests, measured: README's suite times), in that order. With a whole file
# per worker (--dist loadfile) the files that start last set when the suite ends, and xdist by default starts the files
# with the most tests first, which put these few-but-long ones last (one worker alone for minutes at the end).
# pyproject's addopts turn that reordering off (--no-loadscope-reorder) and this order starts them first; a file
# missing here only runs later, in collection order.
SLOW_FIRST = ("test_rl_loop.py", "test_rl_resume.py", "test_rl_mesh.py", "test_model_family_stages.py",
              "test_model_sharding.py", "test_rl_reward_hacking.py", "test_recipe_smoke.py", "test_rl_plan.py",
              "test_model_core.py", "test_runs.py", "test_sample_continuous.py", "test_rl_tools.py",
              "test_train_fused_loss.py", "test_sample_sharding.py", "test_rl_tasks.py", "test_sample_tools.py",
              "test_model_families.py", "test_train_run.py", "test_eval_slips.py")


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: the rest keep their order


def pytest_configure(config):
  # The subprocesses the tests start (RL and train runs, resumes, sweeps) share one persistent compilation cache: the
  # same programs compile once. This process reads and writes it too (jax was imported above, before these variables:
  # set through jax.config), for the programs that take a while to compile: RL and training steps jit closures of
  # their instance (RLStep's update and scoring, the train step), so each run in this process compiles again what an
  # earlier run with the same shapes compiled, and jax.clear_caches() (below) drops every program at each module's
  # end; the cache makes those loads (grpo_toy run again in one process: 13 s -> 4 s). Programs that compile in under
  # half a second are left out: serializing them costs about what it saves.
  cache = os.path.join(str(config.rootpath), "build", f"xla_test_cache_{os.getpid()}")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  import shutil
  cache = os.path.join(str(config.rootpath), "build", f"xla_test_cache_{os.getpid()}")
  shutil.rmtree(cache, ignore_errors=True)


def _data_skip(hook_name: str):
  """A test that needs the benchmark folder (dsmath.paths.shared_data_dir) and finds none skips with DataNotFound's
  message (which says what to run), so a bare clone's suite says what it could not test instead of failing; where
  DSMATH_REQUIRE_DATA is set (.ci/run sets it) the missing folder stays a failure."""
  @pytest.hookimpl(wrapper=True)
  def hook(item):
    from dsmath.paths import DataNotFound
    try:
      return (yield)
    except DataNotFound as e:
      if os.environ.get("DSMATH_REQUIRE_DATA"):
        raise
      pytest.skip(str(e))  # DataNotFound says what is missing and what to run
  hook.__name__ = hook_name
  return hook


pytest_runtest_setup = _data_skip("pytest_runtest_setup")
pytest_runtest_call = _data_skip("pytest_runtest_call")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
  """Drops each test module's compiled programs when it ends. The suite is one long process, and each program XLA's CPU
  backend compiles keeps ~3 memory maps per kernel: without this the process reached the kernel's map limit
  (vm.max_map_count, 65530) ~470 tests in and segfaulted compiling the sampler's decode, in a test that passes alone;
  with it the count peaks at ~23,000 within one module and falls back to ~2,000 after it."""
  yield
  jax.clear_caches()


@pytest.fixture(scope="session")
def rl_parent_run(tmp_path_factory):
  """A finished run (run.json) the RL tests start from: 60 steps of the paradigm's SFT entry on the toy task, partly
  right on its questions."""
  from dsmath import rl
  from tests.rl_configs import parent_config
  workdir = tmp_path_factory.mktemp("rl_parent")
  rl.run(parent_config(), workdir)
  return workdir
