"""dsmath.grading.sandbox against hostile programs and real interpreter layouts.

Both isolation modes (namespace, rlimits) are parametrised everywhere: a mode this host cannot run is a skip saying
why, or a failure where DSMATH_REQUIRE_SANDBOX names it (.ci/run requires the default, namespace). Every program ends
in a clear status with nothing changed outside the sandbox (checked on the host: files, IPC objects, sockets,
processes, kernel keys, a stopped canary process, the evaluating process); the same hostile programs run without a
sandbox are each caught by those checks, so the checks can fail. Every layout of Python (venvs symlinked and copied in
/tmp, $HOME, the repo and /opt, a conda-style prefix, the base interpreter, Debian's) starts, as root and as an
ordinary user (created here with useradd when running as root); infrastructure failures raise SandboxUnavailable and
are never results. Layout and user checks run the sandbox module from a copy inside the interpreter under test (a
subprocess), since what it mounts depends on that interpreter's own `sys`.
"""
import concurrent.futures
import ctypes
import dataclasses
import functools
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import signal
import socket
import string
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from dsmath.grading import sandbox
from dsmath.grading.sandbox import SandboxUnavailable, run_program, run_programs

ROOT = os.geteuid() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
BASE_PY = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (creates a user, a canary of root, /opt layouts)")

# Both isolation modes are always tested: a mode this host cannot run is a skip that says why, or a failure where the
# environment requires it (DSMATH_REQUIRE_SANDBOX=namespace, or a comma list; CI sets it), never a test not generated.
MODES = ("namespace", "rlimits")
REQUIRED = tuple(m.strip() for m in os.environ.get("DSMATH_REQUIRE_SANDBOX", "").split(",") if m.strip())
if set(REQUIRED) - set(MODES):
  raise ValueError(f"DSMATH_REQUIRE_SANDBOX={os.environ['DSMATH_REQUIRE_SANDBOX']!r}: modes are {MODES}")


@functools.cache
def _unavailable(mode: str) -> str:
  """Why `mode` cannot run programs with this process's interpreter ("" when it can)."""
  try:
    sandbox.check_sandbox(mode)
    return ""
  except SandboxUnavailable as e:  # e.g. rlimits as root with a venv under /root: the dropped uid cannot read it
    return str(e)


def _not_here(mode: str, why: str):
  """Skips (saying why), or fails when DSMATH_REQUIRE_SANDBOX names the mode."""
  if mode in REQUIRED:
    pytest.fail(f"isolation={mode!r} is required here (DSMATH_REQUIRE_SANDBOX) but cannot run: {why}")
  pytest.skip(f"isolation={mode!r} cannot run here: {why}")


def _need(mode: str):
  if _unavailable(mode):
    _not_here(mode, _unavailable(mode))


@pytest.fixture(params=MODES)
def mode(request):
  """An isolation mode, with this process's interpreter and user."""
  _need(request.param)
  return request.param


def _run(code, mode, **kw):
  kw.setdefault("timeout_s", 2.0)
  return run_program(textwrap.dedent(code), isolation=mode, **kw)


@pytest.fixture
def outside(tmp_path):
  """A directory outside the sandbox holding a sentinel file the programs try to damage."""
  sentinel = tmp_path / "sentinel.txt"
  sentinel.write_text("untouched")
  os.chmod(tmp_path, 0o777)  # world-writable: only the sandbox itself can stop a write here
  os.chmod(sentinel, 0o666)
  return tmp_path


def _unchanged(outside):
  assert sorted(p.name for p in outside.iterdir()) == ["sentinel.txt"]
  assert (outside / "sentinel.txt").read_text() == "untouched"


# ---------------------------------------------------------------------------------------------------------------------
# What programs see and get, in the modes this process can run (the default interpreter)

def test_normal_program_and_sympy(mode):
  r = _run("import sympy\nprint(sympy.factorint(360))\n", mode, timeout_s=20)
  assert r.status == "ok", r
  assert r.stdout.strip() == "{2: 3, 3: 2, 5: 1}"
  assert r.returncode == 0 and r.isolation == mode
  assert (r.warning == "") == (mode == "namespace")


def test_default_is_the_namespace_mode():
  if not _unavailable("namespace"):
    assert run_program("print(1)").isolation == "namespace"
    return
  with pytest.raises(SandboxUnavailable, match="isolation='rlimits'"):  # never a silent fall back to the unsafe mode
    run_program("print(1)")
  _not_here("namespace", _unavailable("namespace"))  # the fallback refusal is right, but the default mode was untested


def test_time_limits(mode):
  r = _run("while True:\n  pass\n", mode, timeout_s=1.0)
  assert r.status == "timeout" and r.wall_time_s < 2 * 1.0, r  # stopped at its limit (its own clock), not later
  r = _run("import time\nprint('start', flush=True)\ntime.sleep(60)\n", mode, timeout_s=1.0)
  assert r.status == "timeout" and "wall-clock" in r.message and r.stdout == "start\n", r


def test_ignoring_signals_does_not_survive_cpu_limit(mode):
  code = """
  import signal
  for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
  while True:
    pass
  """
  # A wall-clock limit far above the CPU limit, so that on a loaded machine it is still the CPU limit, which
  # ignoring signals cannot escape, that ends the program.
  r = _run(code, mode, timeout_s=60.0, cpu_s=1)
  assert r.status == "timeout" and "CPU" in r.message, r


def test_cpu_limit_is_told_by_cpu_time_not_wall_time(mode):
  # Two threads hashing (hashlib releases the GIL) spend CPU time faster than wall time: the CPU limit ends the
  # program before 1 s of wall time has passed, and it is still reported as the CPU limit, not as an unknown kill.
  code = """
  import hashlib, threading
  data = bytes(1 << 24)
  def spin():
    while True:
      hashlib.sha256(data).digest()
  for _ in range(2):
    threading.Thread(target=spin, daemon=True).start()
  spin()
  """
  # RLIMIT_NPROC counts every task of this user, read when the program starts: room for the two threads even when
  # other jobs of the same user start tasks meanwhile (here a crowded host once left none, "can't start new thread")
  r = _run(code, mode, timeout_s=60.0, cpu_s=1, max_processes=64)
  assert r.status == "timeout" and "CPU" in r.message, r


def test_python_fork_bomb(mode):
  r = _run("import os\nwhile True:\n  os.fork()\n", mode, timeout_s=3.0)
  assert r.status in ("blocked", "error", "timeout") and r.wall_time_s < 2 * 3.0, r


def test_output_and_file_limits(mode):
  r = _run("while True:\n  print('x' * 10000)\n", mode, max_output_bytes=100_000)
  assert r.status == "output_limit" and len(r.stdout) <= 100_000, r
  r = _run("with open('big.bin', 'wb') as f:\n  while True:\n    f.write(b'0' * 65536)\n", mode,
           max_output_bytes=1 << 20)
  assert r.status == "output_limit", r


def test_python_level_escapes_are_blocked(mode, outside):
  site = next(p for p in sys.path if p.endswith("site-packages"))
  for code in (f"open({str(outside / 'new.txt')!r}, 'w').write('pwned')",
               f"open({str(outside / 'sentinel.txt')!r}, 'a').write('pwned')",
               f"import os\nos.remove({str(outside / 'sentinel.txt')!r})",
               f"import shutil\nshutil.rmtree({str(outside)!r})",
               f"import os\nos.rename({str(outside / 'sentinel.txt')!r}, 'stolen.txt')",
               f"import os\nfd = os.open({str(outside / 'x')!r}, os.O_CREAT | os.O_WRONLY)",
               f"import os\nos.symlink({str(outside)!r}, 'l')",
               f"import os\nos.link({str(outside / 'sentinel.txt')!r}, 'h')",
               # relative paths against a directory fd or a changed directory (the audit event omits dir_fd)
               (f"import os\nfd = os.open({site!r}, os.O_RDONLY)\n"
                "os.open('pwn.py', os.O_CREAT | os.O_WRONLY, dir_fd=fd)"),
               f"import os\nos.chdir({site!r})\nopen('pwn.py', 'w')",
               f"import os\nos.chdir({site!r})\nos.mkdir('pwn')",
               "import os, socket\nsocket.socket()",
               "import socket\nsocket.getaddrinfo('example.com', 80)",
               "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)",
               "import _socket\n_socket.socket()",
               f"import os\nos.system('rm -f {outside / 'sentinel.txt'}')",
               f"import subprocess\nsubprocess.run(['rm', '-f', {str(outside / 'sentinel.txt')!r}])",
               "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo hi'])",
               "import os\nos.posix_spawn('/bin/true', ['true'], {})",
               "import pty\npty.spawn('/bin/sh')",
               "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
               "import os, signal\nos.kill(1, signal.SIGTERM)",
               "import os, signal\nos.killpg(1, signal.SIGKILL)",
               "print(open('/etc/passwd').read()[:100])", "print(open('/etc/shadow').read()[:100])",
               f"print(open({__file__!r}).read()[:100])", "print(open('/proc/1/environ').read()[:100])",
               "import os\nprint(os.listdir('/'))"):
    r = _run(code, mode)
    assert r.status == "blocked", (code, r)
    assert "pwn" not in os.listdir(site) and "pwn.py" not in os.listdir(site)
  _unchanged(outside)


def test_workdir_is_fresh_and_writable(mode):
  code = """
  import os
  print(sorted(os.listdir('.')))
  with open('notes.txt', 'w') as f:
    f.write('hi')
  os.mkdir('d')
  os.chdir('d')
  open('inner.txt', 'w').write('ok')  # relative to the directory changed into: inside, allowed
  os.chdir('..')
  print(open('notes.txt').read(), open('d/inner.txt').read())
  """
  for _ in range(2):  # the second run must not see the first run's files
    r = _run(code, mode)
    assert r.status == "ok", r
    assert r.stdout.split("\n")[:2] == ["['main.py']", "hi ok"]


def test_environment_is_empty(mode, monkeypatch):
  monkeypatch.setenv("DSMATH_SECRET_TOKEN", "s3cr3t")
  r = _run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('DSMATH_SECRET_TOKEN'))", mode)
  assert r.status == "ok", r
  assert "s3cr3t" not in r.stdout and "DSMATH_SECRET_TOKEN" not in r.stdout
  assert r.stdout.splitlines()[-1] == "None"


def test_own_failures_count_against_the_program(mode):
  assert _run("import sys\nprint('a')\nsys.exit(0)", mode).status == "ok"
  r = _run("import sys\nsys.exit(7)", mode)
  assert (r.status, r.returncode) == ("error", 7)
  assert _run("import os\nos._exit(0)", mode).status == "ok"
  r = _run("raise ValueError('bad value')", mode)
  assert r.status == "error" and "ValueError: bad value" in r.message
  r = _run("import ctypes\nctypes.string_at(0)", mode)
  assert r.status == "error" and "SIGSEGV" in r.message and r.returncode == -11, r
  for code in ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
               "import os, signal\nos.killpg(0, signal.SIGKILL)"):  # its own process group: the sandbox only
    r = _run(code, mode)
    assert r.status == "error" and "SIGKILL" in r.message, r
  r = _run("x = []\nwhile True:\n  x.append(bytearray(50 << 20))\n", mode, memory_mb=512, timeout_s=30)
  assert r.status == "memory", r
  r = _run("fs = [open(f'f{i}', 'w') for i in range(100000)]", mode)
  assert r.status == "error" and "Too many open files" in r.stderr, r
  r = _run("import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n  return f(n + 1) + 1\nf(0)", mode,
           memory_mb=64, timeout_s=60)
  assert r.status in ("error", "memory"), r  # unbounded recursion ends in a clear status (its frames fill memory)
  r = _run("import sys\nprint(repr(sys.stdin.read()))", mode)
  assert r.status == "ok" and r.stdout == "''\n"
  code = "import os\ntry:\n  os.remove('/usr/bin/true')\nexcept BaseException:\n  pass\nprint('done')"
  r = _run(code, mode)  # swallowing the violation does not hide it
  assert r.status == "blocked" and r.stdout == "done\n", r


def test_batch_mixes_hostile_and_normal_programs(mode, outside):
  codes = ["print(sum(range(10)))", "while True: pass", f"open({str(outside / 'x')!r}, 'w')",
           "x = bytearray(1 << 40)", "print(6 * 7)", "import socket; socket.socket()"] * 2
  results = run_programs(codes, timeout_s=60, cpu_s=1, max_workers=4, isolation=mode)
  assert [r.status for r in results] == ["ok", "timeout", "blocked", "memory", "ok", "blocked"] * 2
  assert [r.stdout for r in results if r.ok] == ["45\n", "42\n"] * 2
  _unchanged(outside)


def test_bad_isolation_name():
  with pytest.raises(ValueError, match="isolation"):
    run_program("print(1)", isolation="chroot")


# ---------------------------------------------------------------------------------------------------------------------
# Infrastructure failures raise, with what to fix, and are never scored

def test_missing_interpreter_raises():
  with pytest.raises(SandboxUnavailable, match="does not exist"):
    run_program("print(1)", python="/nonexistent/bin/python3")


def test_sandbox_not_ready_in_time_raises_not_timeout(mode):
  with pytest.raises(SandboxUnavailable, match="startup_timeout_s"):
    run_program("print(1)", isolation=mode, startup_timeout_s=1e-3)


def test_rlimits_as_root_with_unreadable_interpreter_says_what_to_fix():
  if not (ROOT and sandbox._identity_uid_map() and _unavailable("rlimits")):
    pytest.skip("needs root with an interpreter the unprivileged uid cannot read")
  with pytest.raises(SandboxUnavailable, match="readable and searchable by others") as e:
    run_program("print(1)", isolation="rlimits")
  assert sys.executable in str(e.value)


def test_evaluation_propagates_sandbox_failures(mode):
  from dsmath.data.benchmarks import Record
  from dsmath.data.prompts import BLOCK_CLOSE, PYTHON_OPEN
  from dsmath.eval import evaluate
  recs = [Record("gsm8k", "q0", "What is 6*7?", "42")]

  def gen(prompts, n):
    return [[f"{PYTHON_OPEN}print(6*7)\n{BLOCK_CLOSE}"] * n for _ in prompts]
  res = evaluate(recs, gen, prompt_style="pot", sandbox_limits={"isolation": mode}, bootstrap_resamples=10)
  assert res["summary"]["accuracy"] == 1.0
  calls = []
  with pytest.raises(SandboxUnavailable):  # before generation: nothing is spent on programs that cannot run
    evaluate(recs, lambda p, n: calls.append(1) or gen(p, n), prompt_style="pot",
             sandbox_limits={"python": "/nonexistent/python3"})
  assert not calls
  with pytest.raises(SandboxUnavailable, match="startup_timeout_s"):  # at a program's start: raised, not scored
    evaluate(recs, gen, prompt_style="pot", sandbox_limits={"isolation": mode, "startup_timeout_s": 1e-3})


@pytest.mark.parametrize("machine", sorted(sandbox._SYSCALLS))
def test_seccomp_filter_builds_for_every_known_architecture(machine):
  for shared_host in (False, True):
    prog = sandbox._seccomp_program(machine, shared_host)
    assert 20 < len(prog) < 4096 and prog[-1] == (sandbox._RET, 0, 0, sandbox._ALLOW)
    for i, (code, jt, jf, _) in enumerate(prog):  # every jump lands inside the program
      if code == sandbox._RET:
        assert (jt, jf) == (0, 0)
      else:
        assert i + 1 + max(jt, jf) < len(prog), i
  with pytest.raises(SandboxUnavailable, match="no seccomp syscall table"):
    sandbox._seccomp_program("mips", False)


def test_syscall_tables_match_kernel_headers():
  headers = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "aarch64": "/usr/include/asm-generic/unistd.h"}
  checked = 0
  for machine, path in headers.items():
    if not os.path.exists(path):
      continue
    with open(path) as f:
      kernel = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)\n", f.read())}
    ours = dict(sandbox._SYSCALLS[machine], **sandbox._COMMON)
    assert {k: v for k, v in ours.items() if kernel.get(k) != v} == {}, machine
    checked += 1
  if not checked:
    pytest.skip("kernel uapi headers not installed (linux-libc-dev)")


# ---------------------------------------------------------------------------------------------------------------------
# Running the sandbox inside another interpreter, or as another user

RUNNER = r'''
import dataclasses, importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("dsmath_sandbox_copy", sys.argv[1])
sbx = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sbx
spec.loader.exec_module(sbx)
job = json.load(sys.stdin)
codes = [c.replace("@EVAL_PID@", str(os.getpid())).replace("@EVAL_PGID@", str(os.getpgid(0))) for c in job["codes"]]
out = {"pid": os.getpid(), "prefix": sys.prefix, "euid": os.geteuid()}
try:
  out["results"] = [dataclasses.asdict(r) for r in sbx.run_programs(codes, max_workers=4, **job["limits"])]
except sbx.SandboxUnavailable as e:
  out["unavailable"] = str(e)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def kit():
  """A world-readable copy of the sandbox module and the runners (an ordinary user must read them)."""
  d = tempfile.mkdtemp(prefix="dsmath-sbx-kit-")
  os.chmod(d, 0o755)
  shutil.copy(sandbox.__file__, os.path.join(d, "sandbox.py"))
  for name, text in (("dsmath_runner.py", RUNNER), ("dsmath_native.py", NATIVE_RUNNER)):
    with open(os.path.join(d, name), "w") as f:
      f.write(text)
  for n in ("sandbox.py", "dsmath_runner.py", "dsmath_native.py"):
    os.chmod(os.path.join(d, n), 0o644)
  yield d
  shutil.rmtree(d, ignore_errors=True)


@dataclasses.dataclass
class User:
  name: str
  uid: int
  gid: int
  home: str
  prefix: list  # command prefix that runs as this user

  def env(self, **extra):
    return dict({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "USER": self.name, "LANG": "C.UTF-8"},
                **extra)


@pytest.fixture(scope="module")
def user():
  """An ordinary user: created with useradd (and removed) when running as root, else the current user."""
  if not ROOT:
    pw = pwd.getpwuid(os.getuid())
    yield User(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, [])
    return
  if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("setpriv")):
    pytest.skip("creating an ordinary user needs useradd, userdel and setpriv")
  name = f"dsmsbx{os.getpid() % 100000}"
  subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
  pw = pwd.getpwnam(name)
  try:
    yield User(name, pw.pw_uid, pw.pw_gid, pw.pw_dir,
               ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"])
  finally:
    for pid in filter(str.isdigit, os.listdir("/proc")):  # processes of the user made here, by pid
      try:
        if os.stat(f"/proc/{pid}").st_uid == pw.pw_uid:
          os.kill(int(pid), signal.SIGKILL)
      except OSError:
        pass
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def _runner(kit, python, codes, limits, *, prefix=(), env=None, wrap=None, timeout=180):
  """Runs `codes` through the sandbox module loaded by `python` (as the user of `prefix`); returns its report."""
  cmd = list(prefix) + [python, os.path.join(kit, "dsmath_runner.py"), os.path.join(kit, "sandbox.py")]
  if wrap:  # a shell line around the runner: "$@" is the runner command
    cmd = list(prefix) + ["sh", "-c", wrap, "sh"] + cmd[len(prefix):]
  proc = subprocess.run(cmd, input=json.dumps({"codes": codes, "limits": limits}), capture_output=True, text=True,
                        env=env or {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/tmp",
                        timeout=timeout, check=False)
  assert proc.returncode == 0, (cmd, proc.stderr[-3000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _as(user_or_none, cmd, **kw):
  prefix = user_or_none.prefix if user_or_none else []
  return subprocess.run(prefix + cmd, check=True, capture_output=True, cwd="/tmp",
                        env=(user_or_none.env() if user_or_none else None), **kw)


def _venv(base, path, *, copies=False, user=None):
  _as(user, [base, "-m", "venv", "--without-pip"] + (["--copies"] if copies else []) + [path])
  return os.path.join(path, "bin", "python")


def _condalike(path):
  """A conda-style standalone prefix: bin/python3.X + lib/python3.X of a statically linked CPython (Debian's),
  hard-linked into `path`. Not conda itself (not installable here); the same relocatable layout."""
  ver = subprocess.run([DEBIAN_PY, "-c", "import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')"],
                       capture_output=True, text=True, check=True).stdout.strip()
  os.makedirs(os.path.join(path, "bin"))
  shutil.copy2(os.path.realpath(DEBIAN_PY), os.path.join(path, "bin", ver))
  os.symlink(ver, os.path.join(path, "bin", "python"))
  shutil.copytree(f"/usr/lib/{ver}", os.path.join(path, "lib", ver), copy_function=os.link, symlinks=True,
                  ignore=shutil.ignore_patterns("test", "idlelib", "tkinter", "dist-packages", "site-packages"))
  return os.path.join(path, "bin", "python")


def _dir_in(parent, owner=None):
  d = tempfile.mkdtemp(prefix="dsmsbx-", dir=parent)
  os.chmod(d, 0o755)
  if owner:
    os.chown(d, owner.uid, owner.gid)
  return d


def _remove(made):
  for d in made:
    if d == os.path.join(REPO, "build"):
      try:
        os.rmdir(d)  # only if empty: never what others put there
      except OSError:
        pass
    else:
      shutil.rmtree(d, ignore_errors=True)


def _others_can_enter(path) -> bool:
  """Whether every directory from / down to `path` lets other users through (o+x)."""
  path = os.path.abspath(path)
  while True:
    if not os.stat(path).st_mode & stat.S_IXOTH:
      return False
    if path == os.path.dirname(path):
      return True
    path = os.path.dirname(path)


def _repo_dir(made, owner=None):
  """A directory inside the repository, under build/ (ignored by git); build/ itself goes too if made here."""
  build = os.path.join(REPO, "build")
  if not os.path.exists(build):
    os.mkdir(build)
    made.append(build)
  d = _dir_in(build, owner)
  made.insert(0, d)  # removed before build/
  return d


PROBE = "import sys, os\nprint(6 * 7, sys.prefix)"


def _check_layouts(kit, cases):
  """cases: [(label, python, mode, user or None, expect_ok)]; runs them concurrently, then reports every failure."""
  def one(case):
    label, python, mode, who, ok = case
    try:
      out = _runner(kit, python, [PROBE], {"isolation": mode}, prefix=who.prefix if who else (),
                    env=who.env() if who else None)
    except AssertionError as e:
      return f"{label} [{mode}]: runner failed: {e}"
    if ok and "results" in out and out["results"][0]["status"] == "ok" and \
        out["results"][0]["stdout"] == f"42 {out['prefix']}\n" and out["results"][0]["isolation"] == mode:
      return None
    if not ok and "unavailable" in out:
      return None
    return f"{label} [{mode}]: {json.dumps(out)[:1500]}"
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    failures = [f for f in pool.map(one, cases) if f]
  assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def root_layouts(kit):
  """{mode: [(label, python, expect_ok)]}: interpreter layouts as root (each made once for both modes)."""
  if not ROOT:
    pytest.skip("needs root (/opt layouts, a venv in root's $HOME)")
  made = []
  try:
    tmp, home, opt = _dir_in("/tmp"), _dir_in(os.path.expanduser("~")), _dir_in("/opt")
    made += [tmp, home, opt]
    repo = _repo_dir(made)
    out = {"namespace": [("this process's interpreter", sys.executable, True),
                         ("base interpreter directly", BASE_PY, True),
                         ("venv symlinked in /tmp", _venv(BASE_PY, f"{tmp}/v"), True),
                         ("venv --copies in $HOME", _venv(BASE_PY, f"{home}/v", copies=True), True),
                         ("venv symlinked in the repo", _venv(BASE_PY, f"{repo}/v"), True),
                         ("venv --copies in /opt", _venv(BASE_PY, f"{opt}/vc", copies=True), True)],
           "rlimits": []}
    if DEBIAN_PY:
      deb = [("Debian python3", DEBIAN_PY, True),
             ("venv of Debian python3 in /opt", _venv(DEBIAN_PY, f"{opt}/vd"), True),
             ("conda-style prefix in /opt", _condalike(f"{opt}/conda"), True)]
      out["namespace"] += deb
      out["rlimits"] += deb  # rlimits as root drops to a fresh uid: fine with world-readable interpreters ...
    if not os.stat(os.path.expanduser("~")).st_mode & 0o001:  # ... and refused, saying why, when it cannot read it
      out["rlimits"].append(("venv --copies in $HOME", f"{home}/v/bin/python", False))
    yield out
  finally:
    _remove(made)


@pytest.mark.parametrize("isolation", MODES)
def test_layouts_as_root(kit, root_layouts, isolation):
  if isolation == "namespace":
    _need("namespace")
  if not root_layouts[isolation]:
    pytest.skip(f"no interpreter here that {isolation} can run as root (needs Debian's /usr/bin/python3)")
  _check_layouts(kit, [(label, py, isolation, None, ok) for label, py, ok in root_layouts[isolation]])


@pytest.fixture(scope="module")
def user_layouts(kit, user):
  """[(label, python)]: interpreter layouts of an ordinary user (made once for both modes)."""
  base = DEBIAN_PY or BASE_PY
  if ROOT and not DEBIAN_PY:
    pytest.skip("needs an interpreter an ordinary user can read (Debian's /usr/bin/python3)")
  made = []
  try:
    tmp = tempfile.mkdtemp(prefix="dsmsbx-", dir="/tmp")
    os.chmod(tmp, 0o755)
    made.append(tmp)
    if ROOT:
      os.chown(tmp, user.uid, user.gid)
    home = os.path.join(user.home, f"dsmsbx-{secrets.token_hex(3)}")
    _as(user if ROOT else None, ["mkdir", home])
    made.append(home)
    cases = [("venv symlinked in $HOME", _venv(base, f"{home}/v", user=user if ROOT else None)),
             ("venv --copies in $HOME", _venv(base, f"{home}/vc", copies=True, user=user if ROOT else None)),
             ("venv in /tmp", _venv(base, f"{tmp}/v", user=user if ROOT else None)),
             ("base interpreter", base)]
    if ROOT:
      opt = _dir_in("/opt", user)
      made.append(opt)
      cases += [("venv in /opt", _venv(base, f"{opt}/v", user=user)),
                ("conda-style prefix in /opt", _condalike(f"{opt}/conda"))]
      if _others_can_enter(REPO):  # a clone inside a private (0700) directory is no place for another user's venv
        cases.append(("venv in the repo", _venv(base, f"{_repo_dir(made, user)}/v", user=user)))
    yield cases
  finally:
    _remove(made)


@pytest.mark.parametrize("isolation", MODES)
def test_layouts_as_ordinary_user(kit, user, user_layouts, isolation):
  if isolation == "namespace":
    _need("namespace")
  who = user if ROOT else None
  _check_layouts(kit, [(label, py, isolation, who, True) for label, py in user_layouts])


def test_root_of_a_user_namespace(kit):
  """Like a rootless container: euid 0, but a uid map without spare uids. With nested user namespaces the sandbox
  works (and /proc stays read-only, since a kernel uid 0 would pass its owner checks); without them it says why."""
  _need("namespace")
  if not shutil.which("unshare"):
    pytest.skip("needs util-linux unshare")
  probe = PROBE + "\nimport ctypes\nl = ctypes.CDLL(None, use_errno=True)\n" \
      "print([l.open(p, 1) for p in (b'/proc/sysrq-trigger', b'/proc/sys/kernel/core_pattern')])"
  py = DEBIAN_PY or sys.executable
  out = _runner(kit, py, [probe], {}, wrap='exec unshare --user --map-root-user "$@"')
  assert out["euid"] == 0 and out["results"][0]["status"] == "ok", out
  assert out["results"][0]["stdout"].splitlines() == [f"42 {out['prefix']}", "[-1, -1]"], out
  no_userns = ("exec unshare --user --map-root-user sh -c "
               "'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"' sh \"$@\"")
  for mode, match in (("auto", "namespace sandbox cannot be built"), ("rlimits", "no spare uids")):
    out = _runner(kit, py, ["print(1)"], {"isolation": mode}, wrap=no_userns)
    assert match in out.get("unavailable", ""), out


def test_ordinary_user_without_user_namespaces(kit, user):
  """An ordinary user where user namespaces are not allowed: the default refuses with what to fix; rlimits, opted in,
  runs and says what it lacks."""
  if not shutil.which("unshare"):
    pytest.skip("needs util-linux unshare")
  py = DEBIAN_PY if ROOT else sys.executable
  if not py:
    pytest.skip("needs an interpreter the ordinary user can read")
  # The user's own namespace allows one nested namespace, the (unmapped) one the runner then lives in: from there
  # no further user namespace can be made, as on a host with user.max_user_namespaces = 0.
  wrap = ('exec unshare --user --map-root-user sh -c \'echo 1 > /proc/sys/user/max_user_namespaces && '
          'exec unshare --user "$@"\' sh "$@"')
  env = user.env()
  out = _runner(kit, py, ["print(1)"], {}, prefix=user.prefix, env=env, wrap=wrap)
  assert out["euid"] != 0 and "namespace sandbox cannot be built" in out.get("unavailable", ""), out
  out = _runner(kit, py, [PROBE], {"isolation": "rlimits"}, prefix=user.prefix, env=env, wrap=wrap)
  r = out["results"][0]
  assert r["status"] == "ok" and r["isolation"] == "rlimits" and "best effort" in r["warning"], out


# ---------------------------------------------------------------------------------------------------------------------
# The hostile battery: every kind of escape, in every mode and as every user, with zero effects outside

NR = dict(sandbox._SYSCALLS[os.uname().machine], **sandbox._COMMON,
          getdents64={"x86_64": 217, "aarch64": 61}[os.uname().machine])

PRELUDE = '''
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = $NR
EVAL_PID, EVAL_PGID = @EVAL_PID@, @EVAL_PGID@

def _a(x):
  return x.encode() if isinstance(x, str) else ctypes.c_long(x) if isinstance(x, int) else x

def call(fn, *args):
  ctypes.set_errno(0)
  return fn(*[_a(a) for a in args]), ctypes.get_errno()

def sc(name, *args):
  return call(libc.syscall, NR[name], *args)

def esc(what):
  print("ESCAPED", what, flush=True)

def copen(path, flags, mode=0o644):
  return call(libc.open, path, flags, mode)[0]

def read_all(path):
  fd = copen(path, os.O_RDONLY)
  if fd < 0:
    return b""
  buf = ctypes.create_string_buffer(1 << 16)
  n = libc.read(fd, buf, 1 << 16)
  libc.close(fd)
  return buf.raw[:max(n, 0)]

def sockaddr_in(ip, port):
  return struct.pack("=H", 2) + struct.pack("!H4s8x", port, bytes(map(int, ip.split("."))))
'''

# name -> (program, statuses it may end in, check(stdout, ctx) -> problem or None)
HOSTILE = {
    "write host files natively": ('''
for p in ($SENT_NEW, $SENT, $SECRET_DIR + "/dsmath_pwn", "/etc/dsmath_pwn", "/usr/dsmath_pwn",
          "/var/tmp/dsmath_pwn_$TAG"):
  fd = copen(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  if fd >= 0 and libc.write(fd, b"pwned", 5) == 5:
    esc("wrote " + p)
copen("/tmp/dsmath_pwn_$TAG", os.O_WRONLY | os.O_CREAT)  # the sandbox's own /tmp is fine; the host's is checked
for fn, args in ((libc.unlink, ($SENT,)), (libc.rename, ($SENT, $SENT_NEW)), (libc.mkdir, ($SENT_DIR + "/d", 0o777)),
                 (libc.chmod, ($SENT, 0o600)), (libc.symlink, ("/etc/passwd", $SENT_DIR + "/l")),
                 (libc.truncate, ($SENT, 0)), (libc.link, ($SENT, $SENT_DIR + "/hl"))):
  if call(fn, *args)[0] == 0:
    esc(str(fn))
''', {"ok"}, None),
    "openat on a directory fd": ('''
d = copen($SITE, os.O_RDONLY | os.O_DIRECTORY)
if d >= 0:
  if call(libc.openat, d, "dsmath_pwn_at.py", os.O_WRONLY | os.O_CREAT, 0o644)[0] >= 0:
    esc("openat in site-packages")
  if libc.fchdir(d) == 0 and copen("dsmath_pwn_cd.py", os.O_WRONLY | os.O_CREAT) >= 0:
    esc("fchdir + relative open in site-packages")
''', {"ok"}, None),
    "python dir_fd write": ('''
fd = os.open($SITE, os.O_RDONLY)
os.open("dsmath_pwn_dirfd.py", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
esc("python dir_fd write")
''', {"blocked"}, None),
    "python write after chdir": ('''
os.chdir($SITE)
open("dsmath_pwn_cwd.py", "w").write("x")
esc("python write after chdir")
''', {"blocked"}, None),
    "/proc root and cwd links": ('''
for p in ("/proc/self/root" + $SENT_DIR + "/via_root", "/proc/1/root" + $SENT_DIR + "/via_init",
          "/proc/%d/root%s/via_eval" % (EVAL_PID, $SENT_DIR), "/proc/self/cwd/../../../.." + $SENT_DIR + "/via_cwd"):
  if copen(p, os.O_WRONLY | os.O_CREAT) >= 0:
    esc("wrote " + p)
''', {"ok"}, None),
    "hard and symbolic links": ('''
if call(libc.link, $SENT, "hl")[0] == 0:
  fd = copen("hl", os.O_WRONLY | os.O_APPEND)
  if fd >= 0 and libc.write(fd, b"pwned", 5) == 5:
    esc("hardlink write")
if call(libc.symlink, $SENT_DIR, "sl")[0] == 0 and copen("sl/via_symlink", os.O_WRONLY | os.O_CREAT) >= 0:
  esc("symlink dir write")
if call(libc.symlink, $SENT, "sl2")[0] == 0:
  fd = copen("sl2", os.O_WRONLY | os.O_APPEND)
  if fd >= 0 and libc.write(fd, b"pwned", 5) == 5:
    esc("symlink file write")
''', {"ok"}, None),
    "read secrets natively": ('''
for p in ("/etc/shadow", $SECRET_FILE, $USER_SECRET_FILE, "/dev/shm/" + $SHM_NAME, "/proc/%d/environ" % EVAL_PID,
          "/proc/%d/cmdline" % $CANARY_PID, "/proc/1/environ", "/proc/%d/environ" % os.getppid()):
  data = read_all(p)
  if (p == "/etc/shadow" and b"root:" in data) or $SECRET in data or $ENV_SECRET in data or $CANARY_MARK in data:
    esc("read " + p)
''', {"ok"}, None),
    "host paths visible": ('''
seen = [p for p in ($SECRET_FILE, $USER_SECRET_FILE, $SENT_DIR, "/run", "/var", "/etc/shadow", "/etc/ssh",
                    $RUN_SOCK.decode(), "/dev/shm/" + $SHM_NAME, "/work", "/mnt", "/srv") if os.path.lexists(p)]
print(seen)
if $NS and seen:
  esc("sees host paths %s" % seen)
''', {"ok"}, None),
    "list host directories natively": ('''
def names(path):
  fd = copen(path, os.O_RDONLY | os.O_DIRECTORY)
  if fd < 0:
    return []
  buf = ctypes.create_string_buffer(1 << 16)
  n, out, i = sc("getdents64", fd, buf, 1 << 16)[0], [], 0
  while i < n:
    reclen = struct.unpack_from("=H", buf.raw, i + 16)[0]
    out.append(buf.raw[i + 19:i + reclen].split(b"\\0", 1)[0].decode())
    i += reclen
  return out
wanted = {os.path.basename(p) for p in ($SECRET_FILE, $USER_SECRET_FILE, $SENT_DIR, $SHM_NAME)}
for d in ("/", "/root", os.path.dirname($USER_SECRET_FILE), "/tmp", "/dev/shm", "/home"):
  if wanted & set(names(d)):
    esc("listed %s: %s" % (d, wanted & set(names(d))))
''', {"ok"}, None),
    "System V objects of the host": ('''
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(ctypes.c_int($SHM_KEY), 0, 0)
if shmid >= 0:
  addr = libc.shmat(shmid, None, 0)
  esc("host shm visible, reads %r" % (ctypes.string_at(addr, 32) if addr not in (None, 2 ** 64 - 1) else None))
if libc.semget(ctypes.c_int($SHM_KEY), 0, 0) >= 0:
  esc("host semaphore set visible")
if libc.msgget(ctypes.c_int($SHM_KEY), 0) >= 0:
  esc("host message queue visible")
''', {"ok"}, None),
    "System V objects left behind": ('''
C = 0o1000  # IPC_CREAT
print([libc.shmget(ctypes.c_int($SHM_KEY + 3), 1 << 16, C | 0o666), libc.shmget(ctypes.c_int($SHM_KEY + 1), 4096,
       C | 0o666), libc.semget(ctypes.c_int($SHM_KEY + 4), 4, C | 0o666), libc.msgget(ctypes.c_int($SHM_KEY + 2),
       C | 0o666)])
''', {"ok"}, None),
    "POSIX shm and message queues": ('''
fd = copen("/dev/shm/dsmath-pwn-$TAG", os.O_RDWR | os.O_CREAT, 0o666)
if fd >= 0:
  libc.write(fd, b"x" * 100, 100)
print(fd, call(libc.mq_open, "/dsmath-mq-$TAG", os.O_RDWR | os.O_CREAT, 0o666, None))
''', {"ok"}, None),
    "unix sockets of the host": ('''
for path in ($RUN_SOCK, $ABSTRACT):
  fd = libc.socket(1, 1, 0)
  addr = struct.pack("=H", 1) + path
  if fd >= 0 and libc.connect(fd, addr, len(addr)) == 0:
    esc("unix connect %r" % path)
''', {"ok"}, None),
    "TCP and UDP to 127.0.0.1": ('''
fd, a = libc.socket(2, 1, 0), sockaddr_in("127.0.0.1", $TCP_PORT)
if fd >= 0 and libc.connect(fd, a, len(a)) == 0:
  esc("tcp 127.0.0.1")
fd, a = libc.socket(2, 2, 0), sockaddr_in("127.0.0.1", $UDP_PORT)
if fd >= 0 and libc.sendto(fd, b"pwned", 5, 0, a, len(a)) == 5:
  esc("udp 127.0.0.1")
''', {"ok"}, None),
    "external network": ('''
fd, a = libc.socket(2, 2, 0), sockaddr_in("8.8.8.8", 53)
if fd >= 0 and libc.sendto(fd, b"x", 1, 0, a, len(a)) == 1:
  esc("udp out")
fd, a = libc.socket(2, 1 | 0o4000, 0), sockaddr_in("1.1.1.1", 80)  # non-blocking: EINPROGRESS means a route
r, e = call(libc.connect, fd, a, len(a))
if fd >= 0 and (r == 0 or e == 115):
  esc("tcp out")
''', {"ok"}, None),
    "native fork bomb": ('''
n = 0
for _ in range(300):
  pid = libc.fork()
  if pid == 0:
    libc.prctl(15, b"dsmath_esc_fork", 0, 0, 0)
    time.sleep(30)
    os._exit(0)
  if pid < 0:
    break
  n += 1
print("forked", n)
''', {"ok"}, lambda out, ctx: None if int(out.split()[-1]) < (8 if ctx["ns"] else 300) else "fork bomb unbounded"),
    "setsid double-fork survivor": ('''
if libc.fork() == 0:
  libc.setsid()
  if libc.fork() == 0:
    libc.prctl(15, b"dsmath_esc_sid", 0, 0, 0)
    time.sleep(30)
  os._exit(0)
time.sleep(0.3)
print("parent done")
''', {"ok"}, None),
    "signal outside processes": ('''
libc.kill(-1, 18)  # SIGCONT: harmless, but it would wake the stopped canary
for pid in (EVAL_PID, -EVAL_PGID, $CANARY_PID, -$CANARY_PGID):
  if libc.kill(pid, 0) == 0:
    esc("may signal %d" % pid)
if libc.kill($CANARY_PID, 9) == 0 or libc.kill(-EVAL_PGID, 28) == 0:
  esc("signalled outside")
''', {"ok"}, None),
    "ptrace": ('''
for req, pid in ((16, $CANARY_PID), (0x4206, os.getppid()), (16, 1), (16, EVAL_PID), (0, 0)):
  if call(libc.ptrace, req, pid, None, None)[0] == 0:
    esc("ptrace %d %d" % (req, pid))
''', {"ok"}, None),
    "kernel keyring pile-up": ('''
made = sum(sc("add_key", b"user", b"dsmath_key_%d" % i, b"x" * 32, 32, -4)[0] >= 0 for i in range(20))
if made or sc("keyctl", 1, b"dsmath_session")[0] >= 0:
  esc("created kernel keys")
''', {"ok"}, None),
    "fill the disk natively": ('''
total, i, n, chunk = 0, 0, 1, b"0" * 65536
while total < 4 * $DISK and n > 0:
  fd = copen("f%d" % i, os.O_WRONLY | os.O_CREAT)
  if fd < 0:
    break
  size = 0
  while size + len(chunk) <= $FILE_MAX and total < 4 * $DISK:
    n = libc.write(fd, chunk, len(chunk))
    if n <= 0:
      break
    size, total = size + n, total + n
  libc.close(fd)
  i += 1
print("wrote", total)
''', {"ok"}, lambda out, ctx: None if not ctx["ns"] or int(out.split()[-1]) <= ctx["disk"] else "disk_mb not enforced"),
    "fill the disk from Python": ('''
i = 0
while i * $FILE_MAX <= 4 * $DISK:
  with open("p%d" % i, "wb") as f:
    f.write(b"0" * $FILE_MAX)
  i += 1
esc("python wrote %d bytes" % (i * $FILE_MAX))
''', {"error", "blocked"}, None),
    "memory bomb": ("x = []\nwhile True:\n  x.append(bytearray(50 << 20))\n", {"memory"}, None),
    "CPU loop": ("while True:\n  pass\n", {"timeout"}, None),
    "exec natively": ('''
argv = (ctypes.c_char_p * 4)(b"/bin/sh", b"-c", ("touch " + $SENT_DIR + "/exec_pwn").encode(), None)
print("execve", *call(libc.execve, b"/bin/sh", argv, (ctypes.c_char_p * 1)(None)))
''', {"ok"}, lambda out, ctx: None if out.startswith("execve -1 ") else "execve was not refused"),
    "subprocess from Python": ('import subprocess\nsubprocess.run(["touch", $SENT_DIR + "/sp_pwn"])\n', {"blocked"},
                               None),
    "namespaces and mounts": ('''
os.mkdir("m")
fd = copen("/proc/1/ns/mnt", os.O_RDONLY)
res = {"mount": call(libc.mount, "tmpfs", "m", "tmpfs", 0, None)[0], "unshare_user": call(libc.unshare, 0x10000000)[0],
       "unshare_mnt": call(libc.unshare, 0x20000)[0], "umount_root": call(libc.umount2, "/", 2)[0],
       "pivot_root": sc("pivot_root", ".", "m")[0], "setns": call(libc.setns, fd, 0)[0] if fd >= 0 else -1}
pid = sc("clone", 0x10000000 | 17, 0, 0, 0, 0)[0]  # CLONE_NEWUSER | SIGCHLD
if pid == 0:
  os._exit(0)
res["clone_newuser"] = pid
if [k for k, v in res.items() if v >= 0]:
  esc("namespace or mount calls succeeded: %s" % res)
''', {"ok"}, None),
    "chroot escape": ('''
os.mkdir("c")
if call(libc.chroot, "c")[0] == 0:
  for _ in range(64):
    libc.chdir(b"..")
  libc.chroot(b".")
  esc("chroot")
''', {"ok"}, None),
    "raise resource limits": ('''
import resource
class RL(ctypes.Structure):
  _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]
inf = RL(2 ** 64 - 1, 2 ** 64 - 1)
for res in (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE,
            resource.RLIMIT_NOFILE):
  if call(libc.prlimit, 0, res, ctypes.byref(inf), None)[0] == 0:
    esc("raised rlimit %d" % res)
''', {"ok"}, None),
    "environment secrets": ('''
data = read_all("/proc/self/environ") + read_all("/proc/%d/environ" % os.getppid()) + repr(dict(os.environ)).encode()
if $ENV_SECRET in data:
  esc("environment secret")
''', {"ok"}, None),
    "write the venv's site-packages": ('''
if copen($SITE + "/dsmath_pwn_native.py", os.O_WRONLY | os.O_CREAT) >= 0:
  esc("native write to site-packages")
open($SITE + "/dsmath_pwn.py", "w").write("x")
esc("python write to site-packages")
''', {"blocked"}, None),
    "sysrq and sysctl": ('''
for p in ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
          "/proc/sys/kernel/hostname", "/sys/kernel/mm/transparent_hugepage/enabled"):
  if copen(p, os.O_WRONLY) >= 0:  # opened only: never written
    esc("writable " + p)
''', {"ok"}, None),
    "modify /etc": ('''
for p in ("/etc/hosts", "/etc/passwd", "/etc/resolv.conf", "/etc/ld.so.preload"):
  if copen(p, os.O_WRONLY | os.O_APPEND) >= 0:  # opened only: never written (creating in /etc: the first program)
    esc("writable " + p)
''', {"ok"}, None),
    "device files": ('''
for p in ("/dev/kmsg", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/tty",
          "/dev/console", "/dev/ptmx", "/dev/fuse", "/dev/kvm", "/dev/nvidia0", "/dev/nvidiactl"):
  if copen(p, os.O_RDWR) >= 0:
    esc("opened " + p)
''', {"ok"}, None),
    "hostname and clock": ('''
ts = (ctypes.c_long * 2)(int(time.time()), 0)
r1, r2 = call(libc.sethostname, "dsmath-pwned", 12)[0], sc("clock_settime", 0, ts)[0]
if r1 == 0 or r2 == 0:
  esc("sethostname %d clock_settime %d" % (r1, r2))
''', {"ok"}, None),
    "kernel attack surface": ('''
# Valid requests that succeed without a sandbox where the caller may make them (the first four for any user on most
# hosts); the last four fail on their arguments after the permission check (a module of 0 bytes, a bad reboot magic,
# too many kexec segments), so they are reached without ever acting. EPERM (the sandbox's answer) or ENOSYS (not in
# this kernel) means not reached.
uring = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
bpf_attr = ctypes.create_string_buffer(struct.pack("=IIII", 2, 4, 4, 1), 128)  # BPF_MAP_CREATE: a 1-entry array
# PERF_TYPE_SOFTWARE cpu-clock, attr size 64, disabled, excluding kernel and hypervisor
perf = ctypes.create_string_buffer(struct.pack("=IIQQQQQ", 1, 64, 0, 0, 0, 0, 1 | 1 << 5 | 1 << 6), 128)
res = {"io_uring_setup": sc("io_uring_setup", 4, uring), "bpf": sc("bpf", 0, bpf_attr, 128),
       "perf_event_open": sc("perf_event_open", perf, 0, -1, -1, 0), "userfaultfd": sc("userfaultfd", 1),
       "init_module": sc("init_module", None, 0, b""), "reboot": sc("reboot", 0, 0, 0, None),
       "syslog": sc("syslog", 10, None, 0), "kexec_load": sc("kexec_load", 0, 1000, None, 0)}
reached = [k for k, (r, e) in res.items() if r >= 0 or e not in (1, 38)]
if reached:
  esc("kernel interfaces reachable: %s" % reached)
''', {"ok"}, None),
    "see host processes": ('''
for pid in (EVAL_PID, $CANARY_PID, 1, os.getppid()):
  data = read_all("/proc/%d/cmdline" % pid)
  if $CANARY_MARK in data or b"pytest" in data or b"dsmath_runner" in data:
    esc("sees host process %d: %r" % (pid, data[:80]))
''', {"ok"}, None),
    "thread bomb": (("import threading\nfor _ in range(100):\n  threading.Thread(target=time.sleep, args=(5,), "
                     "daemon=True).start()\n"), {"error", "blocked", "memory"}, None),
    # 1000: far above the sandbox's 256 descriptors, below the 1024 a host gives a process by default
    "file descriptor exhaustion": ("fs = [open('f%d' % i, 'w') for i in range(1000)]\n", {"error", "blocked"}, None),
    "TIOCSTI terminal injection": ('''
c = ctypes.c_char(b"x")
for fd in (0, 1, 2, copen("/dev/tty", os.O_RDWR)):
  if fd >= 0 and call(libc.ioctl, fd, 0x5412, ctypes.byref(c))[0] == 0:
    esc("TIOCSTI on fd %d" % fd)
''', {"ok"}, None),
    "Python reads outside": ('print(open("/etc/passwd").read())\n', {"blocked"}, None),
    "Python sockets": ('import socket\nsocket.create_connection(("127.0.0.1", $TCP_PORT))\n', {"blocked"}, None),
    "kill its own group": ("import signal\nos.killpg(0, signal.SIGKILL)\n", {"error"}, None),
}


def _survivors(grace_s: float = 3.0) -> list[tuple[str, str]]:
  """Live processes named by the hostile programs. Zombies are dead (a killed orphan waits for its reaper, here
  the host's init, which may reap late), so they do not count; live ones get `grace_s` to be killed."""
  deadline = time.monotonic() + grace_s
  while True:
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
      try:
        with open(f"/proc/{pid}/stat") as f:
          comm, rest = f.read().split(" (", 1)[1].rsplit(") ", 1)
      except (OSError, ValueError, IndexError):
        continue
      if comm.startswith("dsmath_esc") and rest.split()[0] != "Z":
        alive.append((pid, rest.split()[0]))
    if not alive or time.monotonic() > deadline:
      return alive
    time.sleep(0.1)


def _kill_survivors():
  """Kills, by pid, the live processes the hostile programs named (those a program run without a sandbox left)."""
  for pid, _ in _survivors(0.0):
    try:
      os.kill(int(pid), signal.SIGKILL)
    except ProcessLookupError:
      pass


class Host:
  """Host-side targets the hostile programs try to reach, and snapshots of everything they must leave alone."""

  def __init__(self, owner: User | None, site: str):
    self.tag = secrets.token_hex(4)
    self.secret = f"dsmath-secret-{secrets.token_hex(8)}"
    self.env_secret = f"dsmath-env-{secrets.token_hex(8)}"
    self.site = site
    self.sent_dir = tempfile.mkdtemp(prefix="dsmsbx-outside-", dir="/tmp")
    os.chmod(self.sent_dir, 0o777)  # world-writable: only the sandbox can stop a write here
    self.sent = os.path.join(self.sent_dir, "sentinel.txt")
    with open(self.sent, "w") as f:
      f.write("untouched")
    os.chmod(self.sent, 0o666)
    home = os.path.expanduser("~")
    self.secret_file = os.path.join(home, f".dsmath-secret-{self.tag}")
    self.user_secret_file = os.path.join(owner.home if owner else home, f".dsmath-user-secret-{self.tag}")
    for path in (self.secret_file, self.user_secret_file):
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
      os.write(fd, self.secret.encode())
      os.close(fd)
    if owner and ROOT:
      os.chown(self.user_secret_file, owner.uid, owner.gid)
    # System V shm (holding the secret), semaphores and a message queue, and a POSIX shm file, all mode 0666.
    self.libc = ctypes.CDLL(None, use_errno=True)
    self.libc.shmat.restype = ctypes.c_void_p
    self.shm_key = 0x5D000000 + secrets.randbelow(1 << 20) * 8  # SHM_KEY + 1..4: keys the programs make
    self.shmid = self.libc.shmget(self.shm_key, 4096, 0o1000 | 0o2000 | 0o666)
    addr = self.libc.shmat(self.shmid, None, 0)
    ctypes.memmove(addr, self.secret.encode(), len(self.secret))
    self.libc.shmdt(ctypes.c_void_p(addr))
    self.semid = self.libc.semget(self.shm_key, 1, 0o1000 | 0o666)
    self.msqid = self.libc.msgget(self.shm_key, 0o1000 | 0o666)
    self.shm_name = f"dsmath-secret-{self.tag}"
    with open(f"/dev/shm/{self.shm_name}", "w") as f:
      f.write(self.secret)
    os.chmod(f"/dev/shm/{self.shm_name}", 0o666)
    # Listening sockets: TCP and UDP on 127.0.0.1, a unix socket under /run (or /tmp), an abstract one.
    self.tcp = socket.socket()
    self.tcp.bind(("127.0.0.1", 0))
    self.tcp.listen(16)
    self.tcp.setblocking(False)
    self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    self.udp.bind(("127.0.0.1", 0))
    self.udp.setblocking(False)
    self.run_sock = f"{'/run' if ROOT else tempfile.gettempdir()}/dsmath-sbx-{self.tag}.sock"
    self.unix = socket.socket(socket.AF_UNIX)
    self.unix.bind(self.run_sock)
    os.chmod(self.run_sock, 0o777)
    self.unix.listen(16)
    self.unix.setblocking(False)
    self.abstract = f"\0dsmath-sbx-{self.tag}".encode()
    self.abs_sock = socket.socket(socket.AF_UNIX)
    self.abs_sock.bind(self.abstract)
    self.abs_sock.listen(16)
    self.abs_sock.setblocking(False)
    # A stopped canary of the evaluating user: any signal, kill or trace that gets out shows on it.
    self.canary_mark = f"dsmath-canary-{self.tag}"
    prefix = owner.prefix if (owner and ROOT) else []
    self.canary = subprocess.Popen(prefix + ["sh", "-c", "sleep 300; exit", self.canary_mark], start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.1)
    os.kill(self.canary.pid, signal.SIGSTOP)
    self.before = self._snapshot()

  def values(self, *, ns: bool, disk: int, file_max: int) -> dict:
    return {"NR": repr(NR), "SENT_DIR": repr(self.sent_dir), "SENT": repr(self.sent),
            "SENT_NEW": repr(os.path.join(self.sent_dir, "new.txt")),
            "SECRET_DIR": repr(os.path.dirname(self.secret_file)), "SECRET": repr(self.secret.encode()),
            "SECRET_FILE": repr(self.secret_file), "USER_SECRET_FILE": repr(self.user_secret_file),
            "SHM_KEY": str(self.shm_key), "SHM_NAME": repr(self.shm_name),
            "TCP_PORT": str(self.tcp.getsockname()[1]), "UDP_PORT": str(self.udp.getsockname()[1]),
            "RUN_SOCK": repr(self.run_sock.encode()), "ABSTRACT": repr(self.abstract),
            "CANARY_PID": str(self.canary.pid), "CANARY_PGID": str(self.canary.pid),
            "CANARY_MARK": repr(self.canary_mark.encode()), "ENV_SECRET": repr(self.env_secret.encode()),
            "SITE": repr(self.site), "NS": repr(ns), "DISK": str(disk), "FILE_MAX": str(file_max), "TAG": self.tag}

  def _snapshot(self) -> dict:
    snap = {}
    for kind in ("shm", "sem", "msg"):
      with open(f"/proc/sysvipc/{kind}") as f:
        snap[kind] = sorted(tuple(ln.split()[:2]) for ln in f.read().splitlines()[1:])
    snap["dev_shm"] = sorted(os.listdir("/dev/shm"))
    with open("/proc/key-users") as f:
      snap["key_users"] = sorted(ln.split(":")[0].strip() for ln in f)
    with open("/etc/hosts", "rb") as f:
      snap["hosts"] = f.read()
    snap["hostname"] = socket.gethostname()
    snap["site"] = sorted(n for n in os.listdir(self.site) if "dsmath_pwn" in n)
    return snap

  def problems(self, grace_s: float = 3.0) -> list[str]:
    """Everything outside that changed (empty when the sandbox held); live survivors get `grace_s` to die."""
    out = []
    try:
      with open(self.sent) as f:
        sentinel = f.read()
    except OSError as e:
      sentinel = repr(e)
    if (sorted(os.listdir(self.sent_dir)) != ["sentinel.txt"] or sentinel != "untouched"
        or os.stat(self.sent).st_nlink != 1):
      out.append(f"sentinel dir changed: {os.listdir(self.sent_dir)}")
    for p in ("/etc/dsmath_pwn", "/usr/dsmath_pwn", f"/var/tmp/dsmath_pwn_{self.tag}", f"/tmp/dsmath_pwn_{self.tag}",
              os.path.join(os.path.dirname(self.secret_file), "dsmath_pwn")):
      if os.path.lexists(p):
        out.append(f"created {p}")
    after = self._snapshot()
    for k, v in self.before.items():
      # key users: a uid that appears is a key made outside; one that goes is the kernel collecting keys of earlier
      # programs (minutes after their last key was dropped), nothing a program did
      if (after[k] != v) if k != "key_users" else (set(after[k]) - set(v)):
        out.append(f"{k} changed: {v!r} -> {after[k]!r}")
    for s, what in ((self.tcp, "tcp"), (self.unix, "unix socket under /run"), (self.abs_sock, "abstract socket")):
      try:
        s.accept()
        out.append(f"a connection reached the host's {what}")
      except BlockingIOError:
        pass
    try:
      self.udp.recvfrom(64)
      out.append("a datagram reached the host's UDP socket")
    except BlockingIOError:
      pass
    ctypes.set_errno(0)
    self.libc.mq_open.restype = ctypes.c_int
    if self.libc.mq_open(f"/dsmath-mq-{self.tag}".encode(), os.O_RDONLY) >= 0:
      out.append("a POSIX message queue was left on the host")
    try:
      with open(f"/proc/{self.canary.pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
      with open(f"/proc/{self.canary.pid}/status") as f:
        tracer = next(ln.split()[1] for ln in f if ln.startswith("TracerPid"))
      if state != "T" or tracer != "0":
        out.append(f"canary disturbed: state {state}, tracer {tracer}")
    except OSError:
      out.append("canary killed")
    out += [f"survivor process {pid} (state {state})" for pid, state in _survivors(grace_s)]
    return out

  def close(self):
    """Removes the targets, and what a program run without a sandbox left: files, IPC objects, processes."""
    try:
      os.killpg(self.canary.pid, signal.SIGKILL)
    except ProcessLookupError:  # a program without a sandbox killed it
      pass
    self.canary.wait()
    _kill_survivors()
    for s in (self.tcp, self.udp, self.unix, self.abs_sock):
      s.close()
    for p in (self.run_sock, f"/dev/shm/{self.shm_name}", self.secret_file, self.user_secret_file,
              f"/var/tmp/dsmath_pwn_{self.tag}", f"/tmp/dsmath_pwn_{self.tag}", f"/dev/shm/dsmath-pwn-{self.tag}"):
      if os.path.lexists(p):
        os.unlink(p)
    self.libc.mq_unlink(f"/dsmath-mq-{self.tag}".encode())
    # IPC_RMID: the three targets, and what "System V objects left behind" made (its keys: SHM_KEY + 1..4)
    rm = {"shm": lambda i: self.libc.shmctl(i, 0, None), "sem": lambda i: self.libc.semctl(i, 0, 0),
          "msg": lambda i: self.libc.msgctl(i, 0, None)}
    for kind, ipc_id in (("shm", self.shmid), ("sem", self.semid), ("msg", self.msqid)):
      rm[kind](ipc_id)
    for kind in rm:
      with open(f"/proc/sysvipc/{kind}") as f:
        for key, ipc_id in (ln.split()[:2] for ln in f.read().splitlines()[1:]):
          if 0 < int(key) - self.shm_key <= 4:
            rm[kind](int(ipc_id))
    shutil.rmtree(self.sent_dir, ignore_errors=True)


# A CPU limit far below the wall-clock one, so that on a loaded machine CPU-bound kinds end by the CPU limit.
BATTERY_LIMITS = dict(timeout_s=8.0, cpu_s=1, memory_mb=256, max_output_bytes=1 << 18, disk_mb=4, max_processes=8)
BATTERY_SIZE = 43  # README states it too


def _judge(name: str, r: dict, host: Host, ns: bool, disk: int) -> list[str]:
  """What in one program's result says it got out: a status it may not end in, an ESCAPED line, a secret in its
  output, its own check. Empty: contained (as far as the result shows; the host is checked apart)."""
  _, statuses, check = HOSTILE[name]
  why = []
  if r["status"] not in statuses:
    why.append(f"status {r['status']} not in {sorted(statuses)} ({r['message']})")
  if "ESCAPED" in r["stdout"]:
    why.append("; ".join(ln for ln in r["stdout"].splitlines() if "ESCAPED" in ln))
  if any(s in r["stdout"] + r["stderr"] for s in (host.secret, host.env_secret)):
    why.append("a secret reached the program's output")
  if check and r["status"] == "ok":
    problem = check(r["stdout"], {"ns": ns, "disk": disk})
    if problem:
      why.append(problem)
  return why


def _battery(mode: str, run, owner: User | None, site: str, ns_expected: bool):
  """Runs every HOSTILE kind through `run(codes) -> [result dicts]`, then checks each result and the host."""
  host = Host(owner, site)
  try:
    disk = BATTERY_LIMITS["disk_mb"] << 20
    vals = host.values(ns=ns_expected, disk=disk, file_max=BATTERY_LIMITS["max_output_bytes"])
    names = list(HOSTILE)
    codes = [string.Template(PRELUDE + HOSTILE[n][0]).substitute(vals) for n in names]
    results = run(codes, host)
    assert len(results) == len(codes)
    failures = []
    for name, r in zip(names, results):
      why = _judge(name, r, host, ns_expected, disk)
      if r["isolation"] != mode:
        why.append(f"ran under {r['isolation']}")
      if why:
        failures.append(f"{name}: {' | '.join(why)}\n    stderr: {r['stderr'][-400:]!r}")
    time.sleep(0.2)  # let the kernel reap the sandboxes' last processes
    failures += [f"host: {p}" for p in host.problems()]
    assert not failures, f"{mode} as {owner.name if owner else 'the current user'}:\n" + "\n".join(failures)
  finally:
    host.close()


def test_hostile_battery_has_its_full_size():
  assert len(HOSTILE) == BATTERY_SIZE
  with open(os.path.join(REPO, "README.md")) as f:
    assert re.findall(r"battery of\s+(\d+)\s+hostile", f.read()) == [str(BATTERY_SIZE)]


# ---------------------------------------------------------------------------------------------------------------------
# The same programs without a sandbox: each one's detectors fire, so a sandbox that let it out would be caught

# How each program runs without a sandbox. "as": "user" (default: an ordinary user; the one made for the tests when
# running as root), "root" (this process's user when it is root; else a user namespace's mapped root) or "userns" (an
# ordinary user's new user + UTS namespace: sethostname there renames nothing of the host). "caps": rlimits far above
# the battery's, only so that the program cannot harm the host; "limit": the battery limit the program goes past
# (from its rusage); "tty": a pseudo-terminal as its stdin (what TIOCSTI would write into).
NATIVE = {
    "chroot escape": {"as": "root"},
    "sysrq and sysctl": {"as": "root"},
    "modify /etc": {"as": "root"},
    "kernel attack surface": {"as": "root"},
    "TIOCSTI terminal injection": {"as": "root", "tty": True},
    "hostname and clock": {"as": "userns"},
    "memory bomb": {"caps": {"RLIMIT_AS": 4 * BATTERY_LIMITS["memory_mb"] << 20}, "limit": "memory"},
    "CPU loop": {"caps": {"RLIMIT_CPU": 3 * BATTERY_LIMITS["cpu_s"]}, "limit": "cpu"},
}
# Programs whose escape needs something of the host (they are shown wherever it has it; this one has all of them).
NEEDS_OF_THE_HOST = {
    "external network": "a route out of this host",
    "kernel keyring pile-up": "add_key allowed (container runtimes often filter it)",
    "namespaces and mounts": "unprivileged user namespaces",
    "hostname and clock": "unprivileged user namespaces (to rename a throwaway UTS namespace, never the host)",
    "chroot escape": "root, or unprivileged user namespaces",
    "sysrq and sysctl": "root, and /proc/sys writable",
    "modify /etc": "root",
    "kernel attack surface": "io_uring, perf events or userfaultfd open to users, or root",
    "TIOCSTI terminal injection": "root",
    "signal outside processes": "root, to run it as a user made for the test: kill(-1, SIGCONT) reaches every process "
                                "of its user, the developer's own when the tests run as one",
    "ptrace": "PTRACE_TRACEME or ptrace of a process of the same user (Yama ptrace_scope < 3)",
}

NATIVE_RUNNER = r'''
import json, os, resource, subprocess, sys, tempfile, time
job = json.load(sys.stdin)
# this process is the evaluating process the program must not reach (its pid, its group, its environment)
code = job["code"].replace("@EVAL_PID@", str(os.getpid())).replace("@EVAL_PGID@", str(os.getpgid(0)))

def caps():
  for name, v in job["caps"].items():
    resource.setrlimit(getattr(resource, name), (v, v))

stdin = os.openpty()[1] if job["tty"] else subprocess.DEVNULL
with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
  t = time.monotonic()
  p = subprocess.Popen([sys.executable, "-c", code], stdin=stdin, stdout=out, stderr=err, cwd=job["cwd"],
                       preexec_fn=caps)
  try:
    rc, timed_out = p.wait(timeout=job["timeout_s"]), False
  except subprocess.TimeoutExpired:
    p.kill()
    rc, timed_out = p.wait(), True
  wall = time.monotonic() - t
  ru = resource.getrusage(resource.RUSAGE_CHILDREN)
  out.seek(0)
  err.seek(0)
  print(json.dumps({"returncode": rc, "timed_out": timed_out, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                    "maxrss_mb": ru.ru_maxrss / 1024, "stdout": out.read(1 << 16).decode(errors="replace"),
                    "stderr": err.read(1 << 16).decode(errors="replace")}))
'''


def _native(kit, name: str, host: Host, user: User, py: str, cwd: str) -> dict | None:
  """Runs HOSTILE[name] as a plain process (see NATIVE) under a stand-in evaluating process; its result as the
  battery reads one (None: the stand-in evaluator was killed)."""
  how = NATIVE.get(name, {})
  who = how.get("as", "user")
  if who == "root" and not ROOT:
    who = "userns_root"
  prefix = [] if who == "root" else user.prefix if ROOT else []
  if who in ("userns", "userns_root"):
    prefix = prefix + ["unshare", "--user", "--map-root-user", "--uts"]
  vals = host.values(ns=True, disk=BATTERY_LIMITS["disk_mb"] << 20, file_max=BATTERY_LIMITS["max_output_bytes"])
  job = {"code": string.Template(PRELUDE + HOSTILE[name][0]).substitute(vals), "caps": how.get("caps", {}),
         "tty": how.get("tty", False), "cwd": cwd, "timeout_s": BATTERY_LIMITS["timeout_s"]}
  env = dict(user.env(DSMATH_TEST_SECRET=host.env_secret), PATH="/usr/local/bin:/usr/bin:/bin")
  proc = subprocess.run(prefix + [py, os.path.join(kit, "dsmath_native.py")], input=json.dumps(job),
                        capture_output=True, text=True, cwd="/tmp", env=env, timeout=120, start_new_session=True,
                        check=False)
  if proc.returncode != 0 or not proc.stdout.strip():
    return None
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  status = ("timeout" if r["timed_out"] else "memory" if "MemoryError" in r["stderr"] else
            "ok" if r["returncode"] == 0 else "error")
  return dict(r, status=status, message=f"exit {r['returncode']}")


def _escape_shown(kit, name: str, user: User, py: str) -> list[str]:
  """The evidence that HOSTILE[name], run without a sandbox, gets out: what the battery's own detectors say of its
  result and of the host, the battery limit it goes past, a killed evaluator."""
  site = tempfile.mkdtemp(prefix="dsmsbx-site-")
  cwd = tempfile.mkdtemp(prefix="dsmsbx-native-")
  for d in (site, cwd):
    os.chmod(d, 0o755)
    if ROOT:
      os.chown(d, user.uid, user.gid)
  host = Host(user if ROOT else None, site)
  try:
    r = _native(kit, name, host, user, py, cwd)
    if r is None:
      return ["the evaluating process was killed"]
    disk = BATTERY_LIMITS["disk_mb"] << 20
    evidence = _judge(name, r, host, True, disk)
    limit = NATIVE.get(name, {}).get("limit")
    if limit == "memory" and r["maxrss_mb"] > BATTERY_LIMITS["memory_mb"]:
      evidence.append(f"{r['maxrss_mb']:.0f} MB resident, past memory_mb={BATTERY_LIMITS['memory_mb']}")
    if limit == "cpu" and r["cpu_s"] > BATTERY_LIMITS["cpu_s"]:
      evidence.append(f"{r['cpu_s']:.1f} s of CPU, past cpu_s={BATTERY_LIMITS['cpu_s']}")
    return evidence + [f"host: {p}" for p in host.problems(grace_s=0.0)]
  finally:
    host.close()
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(cwd, ignore_errors=True)


def test_every_hostile_program_escapes_without_a_sandbox(kit, user):
  """Every program of the battery, run as a plain process (of an ordinary user where that shows it; see NATIVE), is
  caught by the battery's detectors: each detector can fail, so a sandbox that let a program out would be seen.
  Only a program in NEEDS_OF_THE_HOST may go unshown, on a host that lacks what its escape needs."""
  py = DEBIAN_PY if ROOT else sys.executable
  if not py:
    pytest.skip("needs an interpreter the ordinary user can read (Debian's /usr/bin/python3)")
  shown, not_shown, failures = {}, {}, []
  for name in HOSTILE:
    if name == "signal outside processes" and not ROOT:
      not_shown[name] = NEEDS_OF_THE_HOST[name]
      continue
    evidence = _escape_shown(kit, name, user, py)
    if evidence:
      shown[name] = evidence
    elif name in NEEDS_OF_THE_HOST:
      not_shown[name] = NEEDS_OF_THE_HOST[name]
    else:
      failures.append(name)
  print("\n".join(f"{k}: {v[0][:160]}" for k, v in shown.items()))
  print(f"shown to escape without a sandbox: {len(shown)} of {len(HOSTILE)}; not shown on this host: {not_shown}")
  assert not failures, f"programs whose detectors never fired without a sandbox: {failures}"
  assert len(shown) + len(not_shown) == len(HOSTILE)


@pytest.mark.parametrize("isolation", MODES)
def test_hostile_battery_in_process(isolation, monkeypatch):
  """As this process's user, with this process's interpreter; the evaluating process is pytest itself."""
  _need(isolation)
  site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))

  def run(codes, host):
    monkeypatch.setenv("DSMATH_TEST_SECRET", host.env_secret)
    codes = [c.replace("@EVAL_PID@", str(os.getpid())).replace("@EVAL_PGID@", str(os.getpgid(0))) for c in codes]
    return [dataclasses.asdict(r) for r in run_programs(codes, isolation=isolation, max_workers=4, **BATTERY_LIMITS)]
  _battery(isolation, run, None, site, isolation == "namespace")


def _user_venv(user, tag):
  base = DEBIAN_PY if ROOT else sys.executable
  d = os.path.join(user.home, f"dsmsbx-battery-{tag}")
  py = _venv(base, d, user=user if ROOT else None)
  site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                        text=True, check=True).stdout.strip()
  return d, py, site


@pytest.mark.parametrize("isolation", MODES)
def test_hostile_battery_as_ordinary_user(kit, user, isolation):
  """As an ordinary user (a user namespace provides the namespace mode), with a venv in its home."""
  if isolation == "namespace":
    _need("namespace")
  if ROOT and not DEBIAN_PY:
    pytest.skip("needs an interpreter an ordinary user can read (Debian's /usr/bin/python3)")
  d, py, site = _user_venv(user, isolation)
  try:
    def run(codes, host):
      out = _runner(kit, py, codes, dict(BATTERY_LIMITS, isolation=isolation), prefix=user.prefix,
                    env=user.env(DSMATH_TEST_SECRET=host.env_secret))
      if "unavailable" in out:
        _not_here(isolation, f"as the ordinary user {user.name}: {out['unavailable']}")
      return out["results"]
    _battery(isolation, run, user if ROOT else None, site, isolation == "namespace")
  finally:
    shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_hostile_battery_rlimits_as_root(kit):
  """rlimits as root: programs drop to a fresh uid, so the interpreter must be world-readable (a venv in /opt)."""
  if not DEBIAN_PY or not sandbox._identity_uid_map():
    pytest.skip("needs Debian's /usr/bin/python3 and the initial user namespace")
  d = _dir_in("/opt")
  try:
    py = _venv(DEBIAN_PY, f"{d}/v")
    site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()

    def run(codes, host):
      out = _runner(kit, py, codes, dict(BATTERY_LIMITS, isolation="rlimits"),
                    env={"PATH": "/usr/bin:/bin", "DSMATH_TEST_SECRET": host.env_secret})
      assert "results" in out, out
      return out["results"]
    _battery("rlimits", run, None, site, False)
  finally:
    shutil.rmtree(d, ignore_errors=True)
