"""Hostile programs against dsmath.eval.run_program: each ends with a clear status and nothing outside changes."""
import os
import textwrap
import time

import pytest

from dsmath.grading import sandbox
from dsmath.grading.sandbox import run_program, run_programs

NS = sandbox.namespace_isolation_available()
needs_ns = pytest.mark.skipif(not NS, reason="namespace isolation needs root + util-linux unshare (OS-level checks)")
MODES = ["namespace", "rlimits"] if NS else ["rlimits"]


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


def _run(code, mode, **kw):
  kw.setdefault("timeout_s", 2.0)
  return run_program(textwrap.dedent(code), isolation=mode, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_normal_program_and_sympy(mode):
  r = _run("import sympy\nprint(sympy.factorint(360))\n", mode, timeout_s=20)
  assert r.status == "ok", r
  assert r.stdout.strip() == "{2: 3, 3: 2, 5: 1}"
  assert r.returncode == 0


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode):
  t = time.monotonic()
  r = _run("while True:\n  pass\n", mode, timeout_s=1.0)
  assert r.status == "timeout", r
  assert time.monotonic() - t < 5


@pytest.mark.parametrize("mode", MODES)
def test_sleep_hits_wall_clock_not_cpu(mode):
  r = _run("import time\nprint('start', flush=True)\ntime.sleep(60)\n", mode, timeout_s=1.0)
  assert r.status == "timeout" and "wall-clock" in r.message
  assert r.stdout == "start\n"


@pytest.mark.parametrize("mode", MODES)
def test_ignoring_signals_does_not_survive_cpu_limit(mode):
  code = """
  import signal
  for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
  while True:
    pass
  """
  # A wall-clock limit far above the CPU limit, so that on a loaded machine (where 1 s of CPU can take many seconds
  # of wall time) it is still the CPU limit, which ignoring signals cannot escape, that ends the program.
  r = _run(code, mode, timeout_s=60.0, cpu_s=1)
  assert r.status == "timeout" and "CPU" in r.message, r


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb(mode):
  t = time.monotonic()
  r = _run("import os\nwhile True:\n  os.fork()\n", mode, timeout_s=3.0)
  assert r.status in ("blocked", "error", "timeout"), r
  assert time.monotonic() - t < 6


@needs_ns
def test_fork_bomb_without_python_fork_hits_nproc():
  # Bypass the audit hook's fork counter through ctypes: the kernel's RLIMIT_NPROC for the fresh uid still holds.
  code = """
  import ctypes, os
  libc = ctypes.CDLL(None)
  n = 0
  for _ in range(200):
    pid = libc.fork()
    if pid == 0:
      import time; time.sleep(30); os._exit(0)
    if pid < 0:
      break
    n += 1
  print(n)
  """
  r = _run(code, "namespace", timeout_s=5.0, max_processes=8)
  assert r.status == "ok", r
  assert int(r.stdout) < 8


@pytest.mark.parametrize("mode", MODES)
def test_memory_bomb(mode):
  r = _run("x = []\nwhile True:\n  x.append(bytearray(50 << 20))\n", mode, memory_mb=512, timeout_s=30)
  assert r.status == "memory", r


@pytest.mark.parametrize("mode", MODES)
def test_deep_recursion(mode):
  # Python 3.11 frames live on the heap, so unbounded recursion ends in the memory limit (or a C-stack segfault).
  r = _run("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n  return f(n + 1) + 1\nf(0)\n", mode,
           memory_mb=256, timeout_s=30)
  assert r.status in ("error", "memory"), r
  assert r.returncode != 0


@pytest.mark.parametrize("mode", MODES)
def test_huge_output(mode):
  r = _run("while True:\n  print('x' * 10000)\n", mode, max_output_bytes=100_000)
  assert r.status == "output_limit", r
  assert len(r.stdout) <= 100_000


@pytest.mark.parametrize("mode", MODES)
def test_huge_file_in_workdir(mode):
  r = _run("with open('big.bin', 'wb') as f:\n  while True:\n    f.write(b'0' * 65536)\n", mode, max_output_bytes=1 << 20)
  assert r.status == "output_limit", r


@pytest.mark.parametrize("mode", MODES)
def test_write_and_delete_outside(mode, outside):
  for code in (f"open({str(outside / 'new.txt')!r}, 'w').write('pwned')",
               f"open({str(outside / 'sentinel.txt')!r}, 'a').write('pwned')",
               f"import os\nos.remove({str(outside / 'sentinel.txt')!r})",
               f"import shutil\nshutil.rmtree({str(outside)!r})",
               f"import os\nos.rename({str(outside / 'sentinel.txt')!r}, 'stolen.txt')",
               f"import os\nfd = os.open({str(outside / 'x')!r}, os.O_CREAT | os.O_WRONLY)"):
    r = _run(code, mode)
    assert r.status == "blocked", (code, r)
  _unchanged(outside)


@needs_ns
def test_native_write_outside_stays_inside(outside):
  # ctypes bypasses the audit hook; the mount namespace and the unprivileged uid must still protect the host.
  code = f"""
  import ctypes
  libc = ctypes.CDLL(None)
  for p in ({str(outside / 'new.txt')!r}, {str(outside / 'sentinel.txt')!r}, '/etc/dsmath_pwned', '/work/pwned'):
    fd = libc.open(p.encode(), 0o1101, 0o644)  # O_WRONLY|O_CREAT|O_TRUNC
    print(p, fd)
  print(libc.unlink({str(outside / 'sentinel.txt')!r}.encode()))
  """
  r = _run(code, "namespace")
  assert r.status == "ok", r
  _unchanged(outside)
  assert not os.path.exists("/etc/dsmath_pwned") and not os.path.exists("/work/pwned")


@pytest.mark.parametrize("mode", MODES)
def test_reading_files_outside(mode):
  for path in ("/etc/passwd", "/etc/shadow", __file__, "/proc/1/environ"):
    r = _run(f"print(open({path!r}).read()[:100])", mode)
    assert r.status == "blocked", (path, r)
    assert r.stdout == ""
  r = _run("import os\nprint(os.listdir('/'))", mode)
  assert r.status == "blocked", r


@pytest.mark.parametrize("mode", MODES)
def test_workdir_is_fresh_and_writable(mode):
  code = """
  import os
  print(sorted(os.listdir('.')))
  with open('notes.txt', 'w') as f:
    f.write('hi')
  os.mkdir('d')
  print(open('notes.txt').read())
  """
  for _ in range(2):  # the second run must not see the first run's files
    r = _run(code, mode)
    assert r.status == "ok", r
    assert r.stdout.split("\n")[:2] == ["['main.py']", "hi"]


@pytest.mark.parametrize("mode", MODES)
def test_socket_blocked(mode):
  for code in ("import socket\ns = socket.socket()\ns.connect(('1.1.1.1', 80))",
               "import socket\nsocket.getaddrinfo('example.com', 80)",
               "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)",
               "import _socket\n_socket.socket()"):
    r = _run(code, mode)
    assert r.status == "blocked", (code, r)


@needs_ns
def test_no_network_even_natively():
  code = """
  import ctypes, struct
  libc = ctypes.CDLL(None, use_errno=True)
  fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM
  addr = struct.pack('=H', 2) + struct.pack('!H4s8x', 53, bytes([8, 8, 8, 8]))  # sockaddr_in
  rc = libc.connect(fd, addr, len(addr))
  print(fd >= 0, rc, ctypes.get_errno())
  """
  r = _run(code, "namespace")
  assert r.status == "ok", r
  ok_fd, rc, errno = r.stdout.split()
  assert rc == "-1" and int(errno) == 101  # ENETUNREACH: the namespace has no route anywhere


@pytest.mark.parametrize("mode", MODES)
def test_environment_is_empty(mode, monkeypatch):
  monkeypatch.setenv("DSMATH_SECRET_TOKEN", "s3cr3t")
  r = _run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('DSMATH_SECRET_TOKEN'))", mode)
  assert r.status == "ok", r
  assert "s3cr3t" not in r.stdout and "DSMATH_SECRET_TOKEN" not in r.stdout
  assert r.stdout.splitlines()[-1] == "None"


@pytest.mark.parametrize("mode", MODES)
def test_subprocess_and_system(mode, outside):
  target = str(outside / "sentinel.txt")
  for code in (f"import os\nos.system('rm -f {target}')",
               f"import subprocess\nsubprocess.run(['rm', '-f', {target!r}])",
               "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo hi'])",
               "import os\nos.posix_spawn('/bin/true', ['true'], {})",
               "import pty\npty.spawn('/bin/sh')"):
    r = _run(code, mode)
    assert r.status == "blocked", (code, r)
  _unchanged(outside)


@pytest.mark.parametrize("mode", MODES)
def test_ctypes_crash(mode):
  r = _run("import ctypes\nctypes.string_at(0)", mode)
  assert r.status == "error" and "SIGSEGV" in r.message, r
  assert r.returncode == -11


@pytest.mark.parametrize("mode", MODES)
def test_signal_tricks(mode):
  for code in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
               "import os, signal\nos.kill(1, signal.SIGTERM)",
               "import os, signal\nos.killpg(1, signal.SIGKILL)"):
    r = _run(code, mode)
    assert r.status == "blocked", (code, r)
  for code in ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
               "import os, signal\nos.killpg(0, signal.SIGKILL)"):  # its own process group: the sandbox only
    r = _run(code, mode)
    assert r.status == "error" and "SIGKILL" in r.message, r


@pytest.mark.parametrize("mode", MODES)
def test_exit_codes(mode):
  assert _run("import sys\nprint('a')\nsys.exit(0)", mode).status == "ok"
  r = _run("import sys\nsys.exit(7)", mode)
  assert (r.status, r.returncode) == ("error", 7)
  r = _run("import os\nos._exit(0)", mode)
  assert r.status == "ok"
  r = _run("raise ValueError('bad value')", mode)
  assert r.status == "error" and "ValueError: bad value" in r.message


@pytest.mark.parametrize("mode", MODES)
def test_swallowing_the_violation_is_still_reported(mode, outside):
  code = f"try:\n  open({str(outside / 'x')!r}, 'w')\nexcept BaseException:\n  pass\nprint('done')"
  r = _run(code, mode)
  assert r.status == "blocked" and r.stdout == "done\n", r
  _unchanged(outside)


@pytest.mark.parametrize("mode", MODES)
def test_thread_and_fd_exhaustion(mode):
  r = _run("fs = [open(f'f{i}', 'w') for i in range(100000)]", mode)
  assert r.status == "error" and "Too many open files" in r.stderr, r
  r = _run("import threading, time\nfor _ in range(10000):\n  threading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
           mode, max_processes=16)
  assert r.status in ("error", "blocked", "memory"), r


@pytest.mark.parametrize("mode", MODES)
def test_stdin_is_closed(mode):
  r = _run("import sys\nprint(repr(sys.stdin.read()))", mode)
  assert r.status == "ok" and r.stdout == "''\n"


@needs_ns
def test_escaped_children_are_killed():
  # A child that leaves the process group (setsid) and renames itself must still die with the sandbox.
  code = """
  import ctypes, os
  libc = ctypes.CDLL(None)
  if libc.fork() == 0:
    os.setsid()
    libc.prctl(15, b"dsmath_escapee", 0, 0, 0)  # PR_SET_NAME
    import time; time.sleep(60)
  import time; time.sleep(0.3)
  print('parent done')
  """
  r = _run(code, "namespace")
  assert r.status == "ok", r
  time.sleep(0.3)
  survivors = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/comm") as f:
        if f.read().strip() == "dsmath_escapee":
          survivors.append(pid)
    except OSError:
      continue
  assert not survivors


def test_batch_mixes_hostile_and_normal_programs(outside):
  codes = ["print(sum(range(10)))", "while True: pass", f"open({str(outside / 'x')!r}, 'w')",
           "x = bytearray(1 << 40)", "print(6 * 7)", "import socket; socket.socket()"] * 2
  results = run_programs(codes, timeout_s=60, cpu_s=1, max_workers=4)  # CPU limit: robust on a loaded machine
  assert [r.status for r in results] == ["ok", "timeout", "blocked", "memory", "ok", "blocked"] * 2
  assert [r.stdout for r in results if r.ok] == ["45\n", "42\n"] * 2
  _unchanged(outside)


def test_bad_isolation_name():
  with pytest.raises(ValueError, match="isolation"):
    run_program("print(1)", isolation="chroot")
