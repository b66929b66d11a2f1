"""Run untrusted Python programs (program-of-thought, tool-integrated reasoning) with hard limits.

Each program runs in its own process. Two layers of protection, the first is what is actually enforced:

1. Operating system (``isolation="namespace"``, chosen automatically when running as root with util-linux
   ``unshare`` and ``setpriv``): new network namespace (no interfaces but a down loopback, so no network at all), new
   PID namespace with its own /proc (the program cannot see or signal any outside process; when the wrapper dies the
   kernel kills every process in the namespace), new mount namespace in which /tmp, /var/tmp, /dev/shm, /run/lock are
   fresh size-limited tmpfs and /work, /home, /mnt, /srv, /opt, /media are hidden under empty read-only tmpfs; the
   interpreter prefix is bind-mounted read-only; the program then runs as a fresh unprivileged uid/gid (random in a
   high range, so RLIMIT_NPROC counts only this program's processes), with no capabilities and no_new_privs. Nothing
   it writes survives it, and it cannot write anything outside its tmpfs (all other writable places are root-owned).
   World-readable system files (e.g. /etc/passwd) stay readable at the OS level; layer 2 blocks them for Python code.
2. Inside the interpreter (always): a bootstrap sets resource limits (RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC,
   RLIMIT_FSIZE, RLIMIT_CORE=0, RLIMIT_NOFILE) with hard == soft so the program cannot raise them, then installs a
   ``sys.addaudithook`` hook that refuses: opening files outside the working directory and the interpreter's own
   library folders (writes only inside the working directory), directory listing outside them, socket creation,
   subprocess/os.system/exec/spawn, signalling other processes. Audit hooks cannot be removed from Python, but native
   code (ctypes) bypasses them, so under ``isolation="rlimits"`` (not root, or no ``unshare``) this layer is best
   effort only; the limits of layer 2 and the process-group kill on wall-clock timeout hold in both modes.

The environment is empty except a few non-secret variables (PATH, LANG, HOME=cwd, *_NUM_THREADS=1). stdout/stderr go to
files opened by the parent (the program cannot reach them by name); they are capped by RLIMIT_FSIZE.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Sequence

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "blocked")

_SANDBOX_MARK = "\x00dsmath-sandbox:"

# Runs as the program's interpreter before the program: limits, audit hook, then the program as __main__.
_BOOTSTRAP = r'''
import sys, os, resource, json
cfg = json.loads(sys.argv[1])
code = sys.stdin.buffer.read()
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
with open("main.py", "wb") as f:
  f.write(code)
for name, val in (("RLIMIT_CPU", cfg["cpu"]), ("RLIMIT_AS", cfg["mem"]), ("RLIMIT_NPROC", cfg["nproc"]),
                  ("RLIMIT_FSIZE", cfg["fsize"]), ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", 256)):
  resource.setrlimit(getattr(resource, name), (val, val))
CWD = os.path.realpath(os.getcwd())
READ_ROOTS = tuple(os.path.realpath(p) for p in cfg["read_roots"]) + (CWD,)
READ_FILES = frozenset(("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero", "/etc/localtime"))
MARK = cfg["mark"]
MYPID = os.getpid()
FORKS = [cfg["nproc"]]  # root ignores RLIMIT_NPROC (rlimits mode), so forks are also counted here
os.register_at_fork(after_in_child=lambda: FORKS.__setitem__(0, 0))  # children may not fork again

class SandboxViolation(PermissionError):
  pass

def _deny(what):
  # The marker on stderr lets the parent report status "blocked" even if the program swallows the exception.
  try:
    os.write(2, (MARK + "blocked:" + what + "\n").encode("utf-8", "replace"))
  except OSError:
    pass
  raise SandboxViolation("sandbox: " + what + " is not allowed")

def _under(path, roots):
  return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

def _resolve(path):
  if isinstance(path, int):
    return None
  if isinstance(path, bytes):
    path = os.fsdecode(path)
  return os.path.realpath(os.path.join(CWD, os.fspath(path)))

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = frozenset(("os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.symlink",
                           "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                           "os.chflags", "os.setxattr", "os.removexattr", "os.mkfifo", "os.mknod"))
_FORBIDDEN = frozenset(("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
                        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn",
                        "os.forkpty", "os.startfile", "os.setuid", "os.chroot", "webbrowser.open", "urllib.Request",
                        "ftplib.connect", "http.client.connect", "smtplib.connect"))

def _hook(event, args):
  if event == "open":
    path, mode, flags = args
    real = _resolve(path)
    if real is None:
      return
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS)
    if writing:
      if not _under(real, (CWD,)):
        _deny("writing " + real)
    elif not (_under(real, READ_ROOTS) or real in READ_FILES or real.startswith("/proc/self/")
              or real.startswith("/proc/" + str(MYPID) + "/") or real.startswith("/sys/devices/system/cpu")):
      _deny("reading " + real)
  elif event in _FORBIDDEN:
    _deny(event)
  elif event in _WRITE_EVENTS:
    for a in args:
      if isinstance(a, (str, bytes, os.PathLike)):
        real = _resolve(a)
        if real is not None and not _under(real, (CWD,)):
          _deny(event + " " + real)
  elif event in ("os.listdir", "os.scandir", "os.chdir", "glob.glob"):
    a = args[0] if args else "."
    if isinstance(a, (str, bytes, os.PathLike)):
      real = _resolve(a)
      if real is not None and not _under(real, READ_ROOTS):
        _deny(event + " " + real)
  elif event == "os.fork":
    FORKS[0] -= 1
    if FORKS[0] < 0:
      _deny("more than " + str(cfg["nproc"]) + " forks")
  elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
    if args and args[0] not in (0, MYPID):
      _deny(event)

sys.addaudithook(_hook)
del json, resource
sys.path.insert(0, CWD)
sys.argv = ["main.py"]
import runpy
try:
  runpy.run_path("main.py", run_name="__main__")
except MemoryError:
  os.write(2, (MARK + "memory\n").encode())
  raise
'''


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one program.

  status: one of STATUSES. "ok" = exit code 0; "error" = exception, nonzero exit or death by a signal;
    "timeout" = wall-clock or CPU limit; "memory" = MemoryError under RLIMIT_AS; "output_limit" = stdout/stderr or a
    file grew beyond max_output_bytes; "blocked" = the program attempted something the sandbox refuses.
  stdout/stderr: decoded (utf-8, replace), at most max_output_bytes each.
  returncode: the program's exit code, or -N when killed by signal N.
  message: one short human-readable line.
  """
  status: str
  stdout: str
  stderr: str
  returncode: int
  message: str
  wall_time_s: float = 0.0

  @property
  def ok(self) -> bool:
    return self.status == "ok"


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  timeout_s: float = 5.0
  cpu_s: int | None = None  # defaults to ceil(timeout_s)
  memory_mb: int = 1024
  max_output_bytes: int = 1 << 20
  max_processes: int = 8
  disk_mb: int = 64
  isolation: str = "auto"  # "auto" | "namespace" | "rlimits"


@functools.lru_cache(maxsize=1)
def namespace_isolation_available() -> bool:
  """True when we are root and `unshare`+`setpriv` can build the namespace sandbox (probed once)."""
  if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv") or not shutil.which("mount"):
    return False
  try:
    proc = subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
                           "--propagation", "private", "--", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /tmp"],
                          capture_output=True, timeout=10, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
  except (OSError, subprocess.TimeoutExpired):
    return False
  return proc.returncode == 0


def _python_prefixes() -> tuple[str, str]:
  return os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)


def _library_roots(prefix_base: str, prefix_venv: str) -> list[str]:
  v = f"python{sys.version_info.major}.{sys.version_info.minor}"
  roots = [os.path.join(prefix_base, "lib"), os.path.join(prefix_venv, "lib"), "/usr/lib", "/usr/lib64", "/lib",
           "/lib64", "/usr/share/zoneinfo", "/usr/local/lib"]
  return roots + [os.path.join(prefix_base, "lib", v)]


def _namespace_script(uid: int, disk_mb: int, venv: bool, sandbox_python: str) -> str:
  hide = " ".join(d for d in ("/work", "/home", "/mnt", "/srv", "/opt", "/media") if os.path.isdir(d))
  lines = [
      "set -e",
      f"mount -t tmpfs -o size={disk_mb}m,mode=1777 tmpfs /tmp",
      "mkdir /tmp/.py /tmp/.venv /tmp/work",
      'mount --bind "$1" /tmp/.py && mount -o remount,bind,ro /tmp/.py',
  ]
  if venv:
    lines.append('mount --bind "$2" /tmp/.venv && mount -o remount,bind,ro /tmp/.venv')
  lines += [
      "for d in /var/tmp /dev/shm /run/lock; do if [ -d $d ]; then mount -t tmpfs -o size=1m,mode=1777 tmpfs $d; fi; done",
      f"for d in {hide}; do mount -t tmpfs -o size=4k,mode=0755,ro tmpfs $d; done" if hide else "true",
      f"chown {uid}:{uid} /tmp/work && chmod 0700 /tmp/work && cd /tmp/work",
      "set +e",
      # sh stays PID 1 of the namespace (a Python PID 1 would ignore kernel limit signals); reports 128+N on signal N.
      f"setpriv --reuid={uid} --regid={uid} --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "
      f'{sandbox_python} -I -B -c "$3" "$4"',
  ]
  return "\n".join(lines)


def _decode(path: str, limit: int) -> tuple[str, int]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    data = f.read(limit)
  return data.decode("utf-8", "replace"), size


def run_program(code: str, *, timeout_s: float = 5.0, memory_mb: int = 1024, max_output_bytes: int = 1 << 20,
                max_processes: int = 8, cpu_s: int | None = None, disk_mb: int = 64,
                isolation: str = "auto") -> ExecResult:
  """Runs `code` as __main__ in a fresh sandboxed interpreter; never raises for anything the program does."""
  if isolation not in ("auto", "namespace", "rlimits"):
    raise ValueError(f"isolation must be 'auto', 'namespace' or 'rlimits', got {isolation!r}")
  use_ns = namespace_isolation_available() if isolation == "auto" else isolation == "namespace"
  if use_ns and not namespace_isolation_available():
    raise RuntimeError("isolation='namespace' needs root, util-linux unshare/setpriv and mount namespaces")
  cpu = int(cpu_s if cpu_s is not None else max(1, -(-timeout_s // 1)))
  prefix_base, prefix_venv = _python_prefixes()
  venv = prefix_venv != prefix_base
  exe_rel = os.path.relpath(os.path.realpath(sys.executable), prefix_venv if venv else prefix_base)
  outer = tempfile.mkdtemp(prefix="dsmath-sbx-")  # parent-only: holds stdout/stderr files and (rlimits) the workdir
  try:
    if use_ns:
      lib_roots = _library_roots("/tmp/.py", "/tmp/.venv")
      workdir = "/"  # unused: the script cds into its tmpfs
      sandbox_python = ("/tmp/.venv/" if venv else "/tmp/.py/") + exe_rel
    else:
      lib_roots = _library_roots(prefix_base, prefix_venv)
      workdir = os.path.join(outer, "work")
      os.mkdir(workdir)
      sandbox_python = sys.executable
    cfg = json.dumps({"cpu": cpu, "mem": int(memory_mb) << 20, "nproc": int(max_processes),
                      "fsize": int(max_output_bytes) + 1, "read_roots": lib_roots, "mark": _SANDBOX_MARK})
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp/work" if use_ns else workdir,
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    if use_ns:
      uid = 200_000_000 + secrets.randbelow(100_000_000)
      script = _namespace_script(uid, disk_mb, venv, sandbox_python)
      cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation",
             "private", "--", "sh", "-c", script, "sbx", prefix_base, prefix_venv, _BOOTSTRAP, cfg]
      # The interpreter's rpath points into the (now unreadable) original prefix; without this the dynamic loader
      # would silently pick the system libpython, whose stdlib and site rules differ.
      lib_dir = ("/tmp/.venv/lib" if venv else "/tmp/.py/lib") + (":/tmp/.py/lib" if venv else "")
      env_outer = dict(env, PATH="/usr/sbin:/usr/bin:/sbin:/bin", LD_LIBRARY_PATH=lib_dir)
    else:
      cmd = [sandbox_python, "-I", "-B", "-c", _BOOTSTRAP, cfg]
      env_outer = env
    out_path, err_path = os.path.join(outer, "stdout"), os.path.join(outer, "stderr")
    start = time.monotonic()
    with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
      proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out_f, stderr=err_f, cwd=workdir, env=env_outer,
                              process_group=0, close_fds=True)
      timed_out = False
      try:
        proc.communicate(code.encode("utf-8"), timeout=timeout_s)
      except subprocess.TimeoutExpired:
        timed_out = True
      except BrokenPipeError:
        pass
      finally:
        # Kill the whole group even on success: stray children must not outlive the program.
        try:
          os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
        proc.wait()
    wall = time.monotonic() - start
    stdout, out_size = _decode(out_path, max_output_bytes)
    stderr_raw, err_size = _decode(err_path, max_output_bytes + 4096)
    return _classify(proc.returncode, timed_out, use_ns, stdout, stderr_raw, out_size, err_size, max_output_bytes,
                     timeout_s, cpu, memory_mb, wall)
  finally:
    shutil.rmtree(outer, ignore_errors=True)


def _classify(rc: int, timed_out: bool, use_ns: bool, stdout: str, stderr_raw: str, out_size: int, err_size: int,
              max_out: int, timeout_s: float, cpu: int, memory_mb: int, wall: float) -> ExecResult:
  marks = [ln[len(_SANDBOX_MARK):] for ln in stderr_raw.splitlines() if ln.startswith(_SANDBOX_MARK)]
  stderr = "\n".join(ln for ln in stderr_raw.splitlines() if not ln.startswith(_SANDBOX_MARK))[:max_out]
  if use_ns and 128 < rc <= 128 + 64:  # sh reports death by signal N as 128+N
    rc = -(rc - 128)
  sig = -rc if rc < 0 else 0
  signame = signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else str(sig)

  def res(status, msg):
    return ExecResult(status, stdout, stderr, rc, msg, wall)

  if timed_out:
    return res("timeout", f"killed after the wall-clock limit of {timeout_s:g}s")
  if sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and wall >= cpu):
    return res("timeout", f"killed after the CPU-time limit of {cpu}s")
  if sig == signal.SIGXFSZ or out_size > max_out or err_size > max_out + 4096 or "File too large" in stderr:
    return res("output_limit", f"output exceeded {max_out} bytes")
  if any(m.startswith("blocked:") for m in marks):
    what = next(m for m in marks if m.startswith("blocked:"))[len("blocked:"):]
    return res("blocked", f"sandbox refused: {what}")
  if "memory" in marks or (rc != 0 and stderr.rstrip().endswith("MemoryError")):
    return res("memory", f"memory limit of {memory_mb} MiB exceeded")
  if rc == 0:
    return res("ok", "exited normally")
  if sig:
    return res("error", f"killed by signal {signame}")
  last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
  return res("error", f"exit code {rc}" + (f": {last[:200]}" if last else ""))


def run_programs(codes: Sequence[str], *, max_workers: int | None = None, **limits) -> list[ExecResult]:
  """Runs many programs concurrently in a bounded pool of threads (each waits on its own process); keeps order."""
  workers = max_workers or max(1, min(len(codes), (os.cpu_count() or 1) * 2))
  if not codes:
    return []
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(functools.partial(_run_one, limits=limits), codes))


def _run_one(code: str, limits: dict) -> ExecResult:
  return run_program(code, **limits)
