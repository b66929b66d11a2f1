"""Run untrusted Python programs (program-of-thought, tool-integrated reasoning) with hard limits.

Each program runs in its own process, with the interpreter that runs this module (or `python=`), wherever it lives: a
venv (symlinked or copied) in /tmp, $HOME, /root, the repo or /opt, a conda-style prefix, pyenv, the system Python.

isolation="namespace" (the default; "auto" means it): the safe mode, for root and for ordinary users.
  - Namespaces: new PID (the program sees and can signal only its own processes; when the wrapper dies the kernel
    kills them all), network (a down loopback: no network at all, and abstract unix sockets are per namespace), IPC
    (no host System V or POSIX message queue objects, and none it creates outlive it), UTS and mount namespaces. As an
    ordinary user (or as root inside a user namespace, e.g. a rootless container) a user namespace provides the
    privileges to build them; nested user namespaces are then forbidden.
  - Filesystem: the program gets a new root (pivot_root) built on an empty tmpfs, not the host tree with parts hidden:
    /usr (and /bin, /lib*), the interpreter's own directories (the venv, the base prefix, the executable's symlink
    chain: exactly what `sys` reports) bind-mounted read-only at their host paths, a fresh read-only /proc, a minimal
    /dev and /etc (loader cache, time zone, alternatives, a passwd naming the sandbox user), one tmpfs of `disk_mb` for
    /tmp, /tmp/work (its working directory) and /dev/shm. /root, /home, /work, /opt, /run, /var, host sockets and
    secrets are simply not there; nothing it writes survives it.
  - Privileges: as root the program runs as a fresh random uid (so RLIMIT_NPROC counts only its processes); in a user
    namespace as the namespace's uid 0 with secure bits locked. Either way: no capabilities, no_new_privs.
  - seccomp (built here as BPF, installed through ctypes): no exec, no ptrace, no keyrings (add_key/keyctl: no kernel
    key pile-up), no namespace/mount/chroot syscalls, no setsid/setpgid, no sockets but AF_UNIX, no io_uring, bpf,
    perf, userfaultfd, module, clock, reboot or swap calls, no TIOCSTI.
  The interpreter is verified once per (mode, interpreter) by starting it in the sandbox; when that (or any later
  start) fails, `SandboxUnavailable` is raised with what to fix. An infrastructure failure is never an ExecResult.

isolation="rlimits" (opt-in only; ExecResult.warning says what it lacks): no namespaces. Landlock (when the kernel has
  it) confines files to the interpreter's directories (read) and a private working directory (read/write), forbids
  TCP and (ABI >= 6) signals to and abstract sockets of processes outside; seccomp additionally forbids every socket,
  System V / POSIX message queue IPC and signals to other pids. As root the program drops to a random uid, which
  needs a world-readable interpreter. Not enforced against native code (ctypes): `disk_mb` (only files opened from
  Python count; native writes are bounded per file by the output limit, not in total) and, without Landlock (old
  kernels), access to every file the evaluating user can read or write.

Both modes, inside the interpreter: resource limits (RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_CORE=0,
RLIMIT_NOFILE) with hard == soft, and a `sys.addaudithook` hook that refuses (status "blocked") opening files outside
the working directory and the interpreter's folders (writes only inside the working directory; relative paths are
resolved against the current directory or the `dir_fd`, directories outside cannot be opened), listing outside them,
links, sockets, subprocesses, exec and signals to other processes. The environment is empty except a few non-secret
variables (PATH, LANG, HOME, TMPDIR, *_NUM_THREADS=1). stdout/stderr go to files opened by the parent; the program's
clock starts when the sandbox is ready, so start-up time on a loaded machine never counts as a timeout.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import functools
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Sequence

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "blocked")
ISOLATIONS = ("auto", "namespace", "rlimits")

_SANDBOX_MARK = "\x00dsmath-sandbox:"
_SETUP_FAILED = "dsmath sandbox setup failed: "
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# Runs as the program's interpreter before the program: seccomp (+ Landlock), limits, audit hook, ready signal, then
# the program as __main__. Anything that fails before the ready signal is an infrastructure failure (exit 125).
_BOOTSTRAP = r'''
import sys, os, json, resource
cfg = json.loads(sys.argv[1])
MARK = cfg["mark"]

def _setup_failed(what):
  os.write(2, (cfg["setup_failed"] + what + "\n").encode("utf-8", "replace"))
  os._exit(125)

code = sys.stdin.buffer.read()  # stdin is the program file, opened by the parent
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.close(_null)
with open("main.py", "wb") as f:
  f.write(code)
del code
CWD = os.path.realpath(os.getcwd())
MYPID = os.getpid()
READ_ROOTS = tuple(sorted({os.path.realpath(p) for p in list(cfg["read_roots"]) + [
    sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, CWD] + sys.path if p and os.path.exists(p)}))
try:
  import ctypes, struct, stat
  _libc = ctypes.CDLL(None, use_errno=True)
  _libc.syscall.restype = ctypes.c_long
except Exception as e:  # noqa: BLE001
  _setup_failed("ctypes is needed to install the seccomp filter: " + repr(e))
_L = ctypes.c_long

def _sys(what, nr, *args):
  rc = _libc.syscall(_L(nr), *args)
  if rc < 0:
    _setup_failed(what + ": " + os.strerror(ctypes.get_errno()))
  return rc

if _libc.prctl(38, _L(1), _L(0), _L(0), _L(0)) != 0:  # PR_SET_NO_NEW_PRIVS
  _setup_failed("PR_SET_NO_NEW_PRIVS: " + os.strerror(ctypes.get_errno()))
if cfg["landlock"]:
  abi = cfg["landlock"]
  fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
  attr = struct.pack("QQQ", fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)[:8 if abi < 4 else 16 if abi < 6 else 24]
  ruleset = _sys("landlock_create_ruleset", 444, attr, _L(len(attr)), _L(0))
  FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl_dev

  def _allow(path, rights):
    try:
      fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
      return
    rights &= fs if stat.S_ISDIR(os.fstat(fd).st_mode) else fs & FILE_RIGHTS
    _sys("landlock_add_rule " + path, 445, _L(ruleset), _L(1), struct.pack("=Qi", rights, fd), _L(0))
    os.close(fd)
  for p in READ_ROOTS + tuple(cfg["read_files"]):
    _allow(p, 1 | 4 | 8)  # execute, read file, read dir
  for p in cfg["rw_files"]:
    _allow(p, 2 | 4 | (1 << 14))
  _allow(CWD, fs)
  _sys("landlock_restrict_self", 446, _L(ruleset), _L(0))
  os.close(ruleset)
_PLACEHOLDER = {"pid": MYPID, "-pid": -MYPID & 0xFFFFFFFF}
_bpf = b"".join(struct.pack("=HBBI", c, jt, jf, _PLACEHOLDER.get(k, k)) for c, jt, jf, k in cfg["seccomp"])

class _Prog(ctypes.Structure):
  _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
_prog = _Prog(len(cfg["seccomp"]), _bpf)
if _libc.prctl(22, _L(2), ctypes.byref(_prog), _L(0), _L(0)) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
  _setup_failed("installing the seccomp filter: " + os.strerror(ctypes.get_errno()))
del _prog, _bpf, _libc, _sys

for name, val in (("RLIMIT_CPU", cfg["cpu"]), ("RLIMIT_AS", cfg["mem"]), ("RLIMIT_NPROC", cfg["nproc"]),
                  ("RLIMIT_FSIZE", cfg["fsize"]), ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", 256)):
  resource.setrlimit(getattr(resource, name), (val, val))
READ_FILES = frozenset(("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero", "/dev/full", "/etc/localtime"))
DISK = cfg["disk"]
FORKS = [cfg["forks"]]  # root ignores RLIMIT_NPROC, so forks are also counted here
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

def _fd_path(fd):
  try:
    return os.readlink("/proc/self/fd/%d" % fd)
  except OSError:
    return "?"

def _resolve(path, dir_fd=None):
  """Absolute real path; None for an fd that is no file (pipe, socket); "?" when it cannot be told (denied)."""
  if isinstance(path, int):
    p = _fd_path(path)
    return os.path.realpath(p) if p.startswith("/") else (None if ":" in p else "?")
  if path is None:
    path = "."
  if isinstance(path, bytes):
    path = os.fsdecode(path)
  path = os.fspath(path)
  if not os.path.isabs(path):
    try:
      base = os.getcwd() if not isinstance(dir_fd, int) or dir_fd < 0 else _fd_path(dir_fd)  # -1: no dir_fd
    except OSError:
      return "?"
    if not base.startswith("/"):
      return "?"
    path = os.path.join(base, path)
  return os.path.realpath(path)

def _disk_used(top):
  total = 0
  for e in os.scandir(top):
    if e.is_dir(follow_symlinks=False):
      total += _disk_used(e.path)
    else:
      total += e.stat(follow_symlinks=False).st_size
  return total

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> ((index of a path argument, index of its dir_fd argument or None), ...): CPython's audit signatures
_PATH_EVENTS = {
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)),
    "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),), "os.truncate": ((0, None),),
    "os.chflags": ((0, None),), "os.setxattr": ((0, None),), "os.removexattr": ((0, None),),
    "os.mkfifo": ((0, 2),), "os.mknod": ((0, 3),), "shutil.rmtree": ((0, 1),), "shutil.move": ((0, None), (1, None)),
    "shutil.copyfile": ((1, None),), "shutil.copytree": ((1, None),), "shutil.chown": ((0, None),),
    "tempfile.mkstemp": ((0, None),), "tempfile.mkdtemp": ((0, None),)}
_FORBIDDEN = frozenset(("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
                        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn",
                        "os.forkpty", "os.startfile", "os.setuid", "os.chroot", "os.symlink", "os.link",
                        "webbrowser.open", "urllib.Request", "ftplib.connect", "http.client.connect",
                        "smtplib.connect"))

def _hook(event, args):
  if event == "open":
    path, mode, flags = args
    real = _resolve(path)
    if real is None:
      return
    writing = ((isinstance(mode, str) and any(c in mode for c in "wax+"))
               or (isinstance(flags, int) and flags & _WRITE_FLAGS))
    if writing:
      if not _under(real, (CWD,)):
        _deny("writing " + real)
      if DISK and _disk_used(CWD) >= DISK:
        _deny("writing more than the disk limit")
    elif not (_under(real, READ_ROOTS) or real in READ_FILES or real.startswith("/proc/" + str(MYPID) + "/")
              or real.startswith("/sys/devices/system/cpu")):
      _deny("reading " + real)
    # A directory fd outside would let later relative opens (dir_fd=..., whose audit event omits dir_fd) escape.
    if not _under(real, (CWD,)) and os.path.isdir(real):
      _deny("opening directory " + real)
  elif event in _FORBIDDEN:
    _deny(event)
  elif event in _PATH_EVENTS:
    for i, j in _PATH_EVENTS[event]:
      if i < len(args) and isinstance(args[i], (str, bytes, os.PathLike, int)):
        real = _resolve(args[i], args[j] if j is not None and j < len(args) else None)
        if real is not None and not _under(real, (CWD,)):
          _deny(event + " " + real)
  elif event in ("os.listdir", "os.scandir", "os.chdir", "glob.glob", "os.walk", "os.fwalk"):
    real = _resolve(args[0] if args else None)
    if real is not None and not _under(real, READ_ROOTS):
      _deny(event + " " + real)
  elif event == "os.fork":
    FORKS[0] -= 1
    if FORKS[0] < 0:
      _deny("more than " + str(cfg["forks"]) + " forks")
  elif event in ("os.kill", "os.killpg"):
    if args and args[0] not in (0, MYPID):
      _deny(event)

sys.addaudithook(_hook)
os.write(cfg["status_fd"], b"S")  # ready: from here on every failure is the program's own
os.close(cfg["status_fd"])
del json, resource, struct
sys.path.insert(0, CWD)
sys.argv = ["main.py"]
import runpy
try:
  runpy.run_path("main.py", run_name="__main__")
except MemoryError:
  os.write(2, (MARK + "memory\n").encode())
  raise
'''

_PROBE = "import sys\nprint('dsmath-sandbox-ok', sys.prefix)\n"


class SandboxUnavailable(RuntimeError):
  """The sandbox itself cannot run programs here (no isolation mode, an interpreter that cannot start in it, a failed
  mount). Never a verdict on a program: callers must let it propagate instead of scoring anything."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one program.

  status: one of STATUSES. "ok" = exit code 0; "error" = exception, nonzero exit or death by a signal;
    "timeout" = wall-clock or CPU limit; "memory" = MemoryError under RLIMIT_AS; "output_limit" = stdout/stderr or a
    file grew beyond max_output_bytes; "blocked" = the program attempted something the sandbox refuses.
  stdout/stderr: decoded (utf-8, replace), at most max_output_bytes each.
  returncode: the program's exit code, or -N when killed by signal N.
  message: one short human-readable line.
  isolation: the mode it ran under ("namespace" or "rlimits"); warning: empty for "namespace", else what that mode
    does not protect against.
  """
  status: str
  stdout: str
  stderr: str
  returncode: int
  message: str
  wall_time_s: float = 0.0
  isolation: str = ""
  warning: str = ""

  @property
  def ok(self) -> bool:
    return self.status == "ok"


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """The keyword arguments of run_program, with their defaults."""
  timeout_s: float = 5.0
  cpu_s: int | None = None  # defaults to ceil(timeout_s)
  memory_mb: int = 1024
  max_output_bytes: int = 1 << 20
  max_processes: int = 8
  disk_mb: int = 64
  isolation: str = "auto"  # "auto" (= "namespace") | "namespace" | "rlimits" (opt-in, best effort)
  python: str | None = None  # interpreter for the programs; default: the one running this module
  startup_timeout_s: float = 60.0  # the sandbox must be ready by then, else SandboxUnavailable


# ---------------------------------------------------------------------------------------------------------------------
# seccomp

# Syscall numbers (from the kernel's uapi headers: asm/unistd_64.h for x86_64, asm-generic/unistd.h for aarch64).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SYSCALLS = {
    "x86_64": dict(
        socket=41, connect=42, ptrace=101, syslog=103, setsid=112, setpgid=109, kill=62, tkill=200, tgkill=234,
        rt_sigqueueinfo=129, rt_tgsigqueueinfo=297, execve=59, execveat=322, unshare=272, setns=308, mount=165,
        umount2=166, pivot_root=155, chroot=161, clone=56, add_key=248, request_key=249, keyctl=250,
        process_vm_readv=310, process_vm_writev=311, perf_event_open=298, bpf=321, userfaultfd=323, kcmp=312,
        open_by_handle_at=304, name_to_handle_at=303, reboot=169, kexec_load=246, kexec_file_load=320,
        init_module=175, finit_module=313, delete_module=176, swapon=167, swapoff=168, acct=163, settimeofday=164,
        clock_settime=227, clock_adjtime=305, adjtimex=159, sethostname=170, setdomainname=171, quotactl=179,
        vhangup=153, fanotify_init=300, lookup_dcookie=212, nfsservctl=180, iopl=172, ioperm=173, uselib=134,
        shmget=29, shmat=30, shmctl=31, shmdt=67, semget=64, semop=65, semctl=66, semtimedop=220, msgget=68,
        msgsnd=69, msgrcv=70, msgctl=71, mq_open=240, mq_unlink=241, mq_timedsend=242, mq_timedreceive=243,
        mq_notify=244, mq_getsetattr=245, ioctl=16),
    "aarch64": dict(
        socket=198, connect=203, ptrace=117, syslog=116, setsid=157, setpgid=154, kill=129, tkill=130, tgkill=131,
        rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, execve=221, execveat=281, unshare=97, setns=268, mount=40,
        umount2=39, pivot_root=41, chroot=51, clone=220, add_key=217, request_key=218, keyctl=219,
        process_vm_readv=270, process_vm_writev=271, perf_event_open=241, bpf=280, userfaultfd=282, kcmp=272,
        open_by_handle_at=265, name_to_handle_at=264, reboot=142, kexec_load=104, kexec_file_load=294,
        init_module=105, finit_module=273, delete_module=106, swapon=224, swapoff=225, acct=89, settimeofday=170,
        clock_settime=112, clock_adjtime=266, adjtimex=171, sethostname=161, setdomainname=162, quotactl=60,
        vhangup=58, fanotify_init=262, lookup_dcookie=18, nfsservctl=42,
        shmget=194, shmat=196, shmctl=195, shmdt=197, semget=190, semop=193, semctl=191, semtimedop=192, msgget=186,
        msgsnd=189, msgrcv=188, msgctl=187, mq_open=180, mq_unlink=181, mq_timedsend=182, mq_timedreceive=183,
        mq_notify=184, mq_getsetattr=185, ioctl=29),
}
# The same number on every architecture (added after the tables were unified).
_COMMON = dict(pidfd_send_signal=424, io_uring_setup=425, io_uring_enter=426, io_uring_register=427, open_tree=428,
               move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433, pidfd_open=434, clone3=435,
               pidfd_getfd=438, process_madvise=440, mount_setattr=442, quotactl_fd=443)
_DENY = ("ptrace", "syslog", "setsid", "setpgid", "execve", "execveat", "unshare", "setns", "mount", "umount2",
         "pivot_root", "chroot", "add_key", "request_key", "keyctl", "process_vm_readv", "process_vm_writev",
         "perf_event_open", "bpf", "userfaultfd", "kcmp", "open_by_handle_at", "name_to_handle_at", "reboot",
         "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon", "swapoff", "acct",
         "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "quotactl",
         "vhangup", "fanotify_init", "lookup_dcookie", "nfsservctl", "iopl", "ioperm", "uselib", "io_uring_setup",
         "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
         "pidfd_getfd", "process_madvise", "mount_setattr", "quotactl_fd", "pidfd_open", "pidfd_send_signal")
# Without an IPC namespace, host System V segments and message queues would be reachable.
_DENY_SHARED_IPC = ("shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semctl", "semtimedop", "msgget",
                    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
                    "mq_notify", "mq_getsetattr")
_CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL, _EPERM, _ENOSYS = 0x7FFF0000, 0x80000000, 0x00050001, 0x00050026


def _seccomp_program(machine: str, shared_host: bool) -> list[tuple]:
  """BPF instructions (code, jt, jf, k); k may be "pid" / "-pid", filled in by the bootstrap with its own pid.

  shared_host: the rlimits mode, where the program shares the host's network, IPC and process namespaces, so every
  socket, System V / message queue IPC and signals to other pids are refused too.
  """
  if machine not in _SYSCALLS:
    raise SandboxUnavailable(f"the sandbox has no seccomp syscall table for the {machine!r} architecture "
                             f"(known: {sorted(_SYSCALLS)}); add its numbers to dsmath.grading.sandbox._SYSCALLS")
  nr = dict(_SYSCALLS[machine], **_COMMON)
  p: list[tuple] = [(_LD, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH[machine]), (_RET, 0, 0, _KILL), (_LD, 0, 0, 0)]
  if machine == "x86_64":  # the x32 ABI numbers would bypass every check below
    p += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _EPERM)]
  for name in _DENY + (_DENY_SHARED_IPC if shared_host else ()):
    if name in nr:  # iopl, ioperm, uselib exist on x86 only
      p += [(_JEQ, 0, 1, nr[name]), (_RET, 0, 0, _EPERM)]
  p += [(_JEQ, 0, 1, nr["clone3"]), (_RET, 0, 0, _ENOSYS)]  # its flags sit in memory BPF cannot read: use clone
  p += [(_JEQ, 0, 4, nr["clone"]), (_LD, 0, 0, 16), (_JSET, 0, 1, _CLONE_NAMESPACES), (_RET, 0, 0, _EPERM),
        (_RET, 0, 0, _ALLOW)]
  p += [(_JEQ, 0, 5, nr["ioctl"]), (_LD, 0, 0, 24), (_JEQ, 2, 0, _TIOCSTI), (_JEQ, 1, 0, _TIOCLINUX),
        (_RET, 0, 0, _ALLOW), (_RET, 0, 0, _EPERM)]
  if shared_host:
    p += [(_JEQ, 0, 1, nr["socket"]), (_RET, 0, 0, _EPERM)]
    # kill: 0 (own group), the program's pid or its process group (the bootstrap leads its group); nothing else.
    p += [(_JEQ, 0, 6, nr["kill"]), (_LD, 0, 0, 16), (_JEQ, 3, 0, 0), (_JEQ, 2, 0, "pid"), (_JEQ, 1, 0, "-pid"),
          (_RET, 0, 0, _EPERM), (_RET, 0, 0, _ALLOW)]
    for name in ("tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
      p += [(_JEQ, 0, 4, nr[name]), (_LD, 0, 0, 16), (_JEQ, 1, 0, "pid"), (_RET, 0, 0, _EPERM), (_RET, 0, 0, _ALLOW)]
  else:  # AF_UNIX only: the namespace has no network, and its unix sockets reach nothing outside
    p += [(_JEQ, 0, 4, nr["socket"]), (_LD, 0, 0, 16), (_JEQ, 1, 0, 1), (_RET, 0, 0, _EPERM), (_RET, 0, 0, _ALLOW)]
  return p + [(_RET, 0, 0, _ALLOW)]


# ---------------------------------------------------------------------------------------------------------------------
# The interpreter: what exists, and what of it the sandbox must show

_QUERY = ("import sys, json; print(json.dumps([sys.executable, getattr(sys, '_base_executable', ''), sys.prefix, "
          "sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]))")


@dataclasses.dataclass(frozen=True)
class _Interpreter:
  executable: str  # the path to start (a venv's own bin/python, not its realpath)
  prefix: str  # its sys.prefix: started in the sandbox, it must find the same one
  binds: tuple  # ((host real path, path in the sandbox), ...): mounted read-only at their host paths


def _under(path: str, root: str) -> bool:
  return path == root or path.startswith(root.rstrip("/") + "/")


def _symlink_chain(path: str) -> list[str]:
  chain = [path]
  while os.path.islink(chain[-1]) and len(chain) < 40:
    chain.append(os.path.normpath(os.path.join(os.path.dirname(chain[-1]), os.readlink(chain[-1]))))
  return chain


@functools.cache
def _interpreter(python: str | None) -> _Interpreter:
  """Finds the interpreter and the directories it needs from what `sys` reports (queried for a foreign `python`)."""
  if python is None:
    exe = sys.executable or getattr(sys, "_base_executable", "")
    info = [exe, getattr(sys, "_base_executable", ""), sys.prefix, sys.exec_prefix, sys.base_prefix,
            sys.base_exec_prefix]
  else:
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.path.exists(found):
      raise SandboxUnavailable(f"python={python!r} does not exist; pass the path of an interpreter")
    try:
      proc = subprocess.run([found, "-I", "-c", _QUERY], capture_output=True, text=True, timeout=60,
                            env={"PATH": _PATH, "LANG": "C.UTF-8"}, check=False)
      info = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
      err = proc.stderr.strip()[-500:] if "proc" in locals() else ""
      raise SandboxUnavailable(f"cannot start python={found!r} on the host to find its prefixes ({e!r} {err!r}); "
                               "pass a working interpreter") from e
    exe = os.path.abspath(found)
  if not exe or not os.path.exists(exe):
    raise SandboxUnavailable(f"cannot tell which interpreter runs the programs (sys.executable={exe!r}); pass python=")
  candidates = [p for p in info[1:] if p]
  for hop in _symlink_chain(os.path.abspath(exe)) + _symlink_chain(os.path.abspath(info[1] or exe)):
    candidates.append(os.path.dirname(hop))
  paths = set()
  for c in candidates:
    for p in (os.path.abspath(c), os.path.realpath(c)):
      if os.path.isdir(p) and p != "/" and not any(_under(p, d) for d in ("/proc", "/dev", "/sys")):
        paths.add(p)
  keep: list[str] = []
  for p in sorted(paths, key=lambda s: (s.count("/"), s)):  # parents first: a bind shows everything below it
    if not any(_under(p, d) for d in _SYSTEM_DIRS) and not any(_under(p, k) for k in keep):
      keep.append(p)
  return _Interpreter(os.path.abspath(exe), info[2], tuple((os.path.realpath(p), p) for p in keep))


# ---------------------------------------------------------------------------------------------------------------------
# Namespace mode

def _identity_uid_map() -> bool:
  """True in the initial user namespace (every uid maps to itself), where root can pick any uid for the program."""
  try:
    with open("/proc/self/uid_map") as f:
      return f.read().split() == ["0", "0", "4294967295"]
  except OSError:
    return False


@functools.lru_cache(maxsize=1)
def _ns_variant() -> str:
  """"root": real root, the program gets a random uid; "user": a user namespace provides the privileges (ordinary
  users, and root inside a user namespace, whose uid map has no spare uids)."""
  return "root" if os.geteuid() == 0 and _identity_uid_map() else "user"


def _setpriv(variant: str, uid: int) -> list[str]:
  common = ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
  if variant == "root":
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + common + ["--"]
  # Stays the namespace's uid 0 (the only mapped uid) but can never regain capabilities from it.
  bits = "+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked"
  return ["setpriv"] + common + [f"--securebits={bits}", "--"]


def _mount_opts(path: str) -> str:
  # In a user namespace a read-only remount must keep the source's locked flags (noexec), or it fails with EPERM.
  try:
    noexec = os.statvfs(path).f_flag & os.ST_NOEXEC
  except OSError:
    noexec = 0
  return "remount,bind,ro,nosuid,nodev" + (",noexec" if noexec else "")


def _ns_command(root: str, variant: str, uid: int, disk_mb: int, binds: Sequence[tuple], final: list[str]) -> list:
  """unshare + a setup script (as root of the new namespaces) that builds the new root in `root`, pivots into it and
  runs `final` (whose "$1" "$2" are the script's extra arguments) with all privileges dropped."""
  q = shlex.quote
  s = ["set -eu", f"cd {q(root)}", "mount -n -t tmpfs -o size=1m,mode=0755,nosuid,nodev tmpfs .",
       f"cd {q(root)}", "mkdir usr etc dev proc tmp .old",
       "mount -n --bind /usr usr", f"mount -n -o {_mount_opts('/usr')} usr"]
  for d in _SYSTEM_DIRS[1:]:
    if os.path.islink(d):
      s.append(f"ln -s {q(os.readlink(d))} .{d}")
    elif os.path.isdir(d):
      s += [f"mkdir .{d}", f"mount -n --bind {d} .{d}", f"mount -n -o {_mount_opts(d)} .{d}"]
  for f in ("/etc/ld.so.cache", "/etc/localtime"):
    if os.path.lexists(f):
      s.append(f"cp -P {f} etc/")
  if os.path.isdir("/etc/alternatives"):  # Debian's shared libraries (e.g. BLAS) resolve through these links
    s += ["mkdir etc/alternatives", "mount -n --bind /etc/alternatives etc/alternatives",
          f"mount -n -o {_mount_opts('/etc/alternatives')} etc/alternatives"]
  user = uid if variant == "root" else 0
  s += [(f"printf 'root:x:0:0:root:/:/usr/sbin/nologin\\nsandbox:x:{user}:{user}::/tmp/work:/usr/sbin/nologin\\n'"
         " > etc/passwd"),
        f"printf 'root:x:0:\\nsandbox:x:{user}:\\n' > etc/group",
        "printf '127.0.0.1 localhost\\n' > etc/hosts",
        "mount -n -t tmpfs -o size=64k,mode=0755,nosuid,noexec tmpfs dev"]
  for n in ("null", "zero", "full", "random", "urandom"):
    s.append(f"touch dev/{n} && mount -n --bind /dev/{n} dev/{n}")
  s += [("ln -s /proc/self/fd dev/fd && ln -s /proc/self/fd/0 dev/stdin && ln -s /proc/self/fd/1 dev/stdout"
         " && ln -s /proc/self/fd/2 dev/stderr && mkdir dev/shm"),
        # One tmpfs holds everything the program can write: disk_mb bounds /tmp, its working directory and /dev/shm.
        f"mount -n -t tmpfs -o size={int(disk_mb)}m,mode=1777,nosuid,nodev tmpfs tmp",
        "mkdir -m 1777 tmp/.shm && mkdir -m 0700 tmp/work" + (f" && chown {uid}:{uid} tmp/work" if user else ""),
        "mount -n --bind tmp/.shm dev/shm", "mount -n -o remount,bind,ro,nosuid,noexec dev"]
  for src, dst in binds:
    s += [f"mkdir -p .{q(dst)}", f"mount -n --bind {q(src)} .{q(dst)}", f"mount -n -o {_mount_opts(src)} .{q(dst)}"]
  s += ["mount -n -t proc -o nosuid,nodev,noexec proc proc",
        "pivot_root . .old", "cd /", "umount -n -l /.old", "rmdir /.old", "mount -n -o remount,bind,ro,nosuid,nodev /"]
  if variant == "user":  # per user namespace: no nested ones (seccomp refuses them too)
    s.append("echo 0 > /proc/sys/user/max_user_namespaces")
  # Read-only /proc: a program whose kernel uid is 0 (root inside a user namespace that maps 0 to 0) would otherwise
  # pass the owner checks of /proc/sysrq-trigger and /proc/sys without any capability.
  s.append("mount -n -o remount,bind,ro,nosuid,nodev,noexec /proc")
  # sh stays PID 1 of the namespace (a Python PID 1 would ignore kernel limit signals); reports 128+N on signal N.
  s += ["cd /tmp/work", "set +e", " ".join(q(a) for a in final) + ' "$1" "$2"']
  unshare = ["unshare"] + (["--user", "--map-root-user"] if variant == "user" else [])
  return unshare + ["--ipc", "--net", "--pid", "--uts", "--mount", "--fork", "--kill-child", "--propagation",
                    "private", "--", "sh", "-c", "\n".join(s), "sbx"]


@functools.lru_cache(maxsize=1)
def _namespace_probe() -> str:
  """"" when the namespace sandbox can be built here (checked once, without Python), else why not."""
  missing = [t for t in ("unshare", "setpriv", "mount", "pivot_root", "umount") if not shutil.which(t, path=_PATH)]
  if missing:
    return f"util-linux tools not found: {', '.join(missing)}"
  variant = _ns_variant()
  root = tempfile.mkdtemp(prefix="dsmath-sbx-probe-")
  try:
    cmd = _ns_command(root, variant, 200_000_000, 1, (), _setpriv(variant, 200_000_000) + ["true"])
    proc = subprocess.run(cmd + ["", ""], capture_output=True, text=True, timeout=60, env={"PATH": _PATH},
                          check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    return repr(e)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return "" if proc.returncode == 0 else (proc.stderr.strip() or f"exit code {proc.returncode}")[-500:]


def namespace_isolation_available() -> bool:
  """True when the namespace sandbox can be built here: as root, or as an ordinary user through an unprivileged user
  namespace (probed once)."""
  return _namespace_probe() == ""


def _no_namespace_help(detail: str) -> str:
  who = "root" if os.geteuid() == 0 else "an ordinary user"
  return (f"the namespace sandbox cannot be built here (running as {who}): {detail}. Fix: allow user namespaces "
          "(sysctl user.max_user_namespaces > 0; on older Debian/Ubuntu kernel.unprivileged_userns_clone=1; on Ubuntu "
          ">= 23.10 kernel.apparmor_restrict_unprivileged_userns=0), or in a container allow unshare and mount (e.g. "
          "docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined), and install util-linux "
          "(unshare, setpriv, mount, pivot_root). Or opt in to isolation='rlimits', which is best effort (see "
          "ExecResult.warning and dsmath/grading/sandbox.py).")


# ---------------------------------------------------------------------------------------------------------------------
# rlimits mode

@functools.lru_cache(maxsize=1)
def _landlock_abi() -> int:
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, int(libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))))
  except (OSError, AttributeError):
    return 0


def _rlimits_warning(abi: int) -> str:
  files = (f"Landlock ABI {abi} confines files to the interpreter's folders (read) and the working directory"
           + (", forbids TCP" if abi >= 4 else "") + (" and signals outside" if abi >= 6 else "")
           if abi else "no Landlock on this kernel: native code can read and write every file the user can")
  return ("isolation='rlimits' is best effort: no namespaces (shared filesystem, network, IPC and process table); "
          f"{files}; seccomp forbids sockets, System V / message queue IPC, exec, ptrace, keys and signals to other "
          "pids; disk_mb is not enforced against native code")


def _user_tasks(uid: int) -> int:
  """Tasks (processes and threads) of `uid`: RLIMIT_NPROC counts them all, outside a user namespace."""
  n = 0
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      if os.stat(f"/proc/{pid}").st_uid == uid:
        n += len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
      continue
  return n


# ---------------------------------------------------------------------------------------------------------------------
# Running

def _resolve_isolation(isolation: str) -> str:
  if isolation not in ISOLATIONS:
    raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
  if isolation == "rlimits":
    return "rlimits"
  detail = _namespace_probe()
  if detail:
    raise SandboxUnavailable(_no_namespace_help(detail))
  return "namespace"


_verified: set = set()
_verify_lock = threading.Lock()


def check_sandbox(isolation: str = "auto", python: str | None = None) -> str:
  """Resolves the isolation mode and starts the interpreter in the sandbox once (the verdict is cached per mode and
  interpreter). Returns the mode; raises SandboxUnavailable saying what to fix."""
  mode = _resolve_isolation(isolation)
  interp = _interpreter(python)
  key = (mode, interp, os.geteuid())
  with _verify_lock:
    if key in _verified:
      return mode
    r = _execute(_PROBE, mode, interp, timeout_s=30.0, memory_mb=512, max_output_bytes=1 << 16, max_processes=8,
                 cpu_s=30, disk_mb=8, startup_timeout_s=60.0)
    hint = _readable_hint(mode, interp)
    if not (r.ok and r.stdout.startswith("dsmath-sandbox-ok")):
      raise SandboxUnavailable(f"the sandbox (isolation={mode!r}) started {interp.executable} but a trivial program "
                               f"failed: {r.message}; stderr: {r.stderr.strip()[-800:]!r}.{hint}")
    seen = r.stdout.split(" ", 1)[1].strip()
    # An interpreter that cannot read its own installation may fall back to another prefix (e.g. the system's
    # stdlib) and half work: refuse that instead of running programs against a mismatched library.
    if os.path.realpath(seen) != os.path.realpath(interp.prefix):
      raise SandboxUnavailable(f"in the sandbox (isolation={mode!r}) {interp.executable} finds sys.prefix={seen!r} "
                               f"instead of {interp.prefix!r}: it cannot read its own installation there.{hint}")
    _verified.add(key)
  return mode


def run_program(code: str, *, timeout_s: float = 5.0, memory_mb: int = 1024, max_output_bytes: int = 1 << 20,
                max_processes: int = 8, cpu_s: int | None = None, disk_mb: int = 64, isolation: str = "auto",
                python: str | None = None, startup_timeout_s: float = 60.0) -> ExecResult:
  """Runs `code` as __main__ in a fresh sandboxed interpreter (see SandboxLimits for the arguments).

  Whatever the program does ends in an ExecResult. SandboxUnavailable is raised when the sandbox itself cannot run
  (no isolation mode here, the interpreter cannot start in it): that is never the program's fault.
  """
  mode = check_sandbox(isolation, python)
  cpu = int(cpu_s if cpu_s is not None else max(1, -(-timeout_s // 1)))
  return _execute(code, mode, _interpreter(python), timeout_s=timeout_s, memory_mb=memory_mb,
                  max_output_bytes=max_output_bytes, max_processes=max_processes, cpu_s=cpu, disk_mb=disk_mb,
                  startup_timeout_s=startup_timeout_s)


def _execute(code: str, mode: str, interp: _Interpreter, *, timeout_s: float, memory_mb: int, max_output_bytes: int,
             max_processes: int, cpu_s: int, disk_mb: int, startup_timeout_s: float) -> ExecResult:
  euid = os.geteuid()
  variant = _ns_variant() if mode == "namespace" else ("root" if euid == 0 else "user")
  uid = 200_000_000 + secrets.randbelow(100_000_000)
  outer = tempfile.mkdtemp(prefix="dsmath-sbx-")  # parent-only: program file, stdout/stderr, the new root or workdir
  status_r, status_w = os.pipe()
  proc = None
  try:
    code_path = os.path.join(outer, "main.py")
    with open(code_path, "wb") as f:
      f.write(code.encode("utf-8"))
    shared_host = mode == "rlimits"
    landlock = _landlock_abi() if shared_host else 0
    read_roots = [p for p in _SYSTEM_DIRS if os.path.exists(p)] + [dst for _, dst in interp.binds]
    nproc = int(max_processes)
    if mode == "namespace" and variant == "user":
      nproc += 2  # the user namespace's own count also holds its unshare and sh
    elif shared_host and euid != 0:
      nproc += _user_tasks(euid)  # RLIMIT_NPROC counts every task of this user
    cfg = {"cpu": int(cpu_s), "mem": int(memory_mb) << 20, "nproc": nproc, "forks": int(max_processes),
           "fsize": int(max_output_bytes) + 1, "read_roots": read_roots, "mark": _SANDBOX_MARK,
           "setup_failed": _SETUP_FAILED, "status_fd": status_w, "landlock": landlock,
           "seccomp": _seccomp_program(os.uname().machine, shared_host),
           "disk": int(disk_mb) << 20 if shared_host else 0,  # namespace mode: the tmpfs size bounds it
           "read_files": ["/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/sys/devices/system/cpu"],
           "rw_files": ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]}
    py = [interp.executable, "-I", "-B", "-c"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    if mode == "namespace":
      root = os.path.join(outer, "root")
      os.mkdir(root)
      cmd = _ns_command(root, variant, uid, disk_mb, interp.binds, _setpriv(variant, uid) + py)
      cmd += [_BOOTSTRAP, json.dumps(cfg)]
      env.update(PATH=_PATH, HOME="/tmp/work", TMPDIR="/tmp")
      cwd = "/"
    else:
      cwd = os.path.join(outer, "work")
      os.mkdir(cwd, 0o700)
      cmd = py + [_BOOTSTRAP, json.dumps(cfg)]
      if euid == 0:  # root's files are all writable to a root program: run it as a fresh unprivileged uid
        if not shutil.which("setpriv", path=_PATH) or not _identity_uid_map():
          raise SandboxUnavailable("isolation='rlimits' as root must drop programs to a fresh unprivileged uid, which "
                                   "needs util-linux setpriv and the initial user namespace (root of a user namespace "
                                   "has no spare uids): run as an ordinary user or enable namespace isolation")
        os.chown(cwd, uid, uid)
        os.chmod(outer, 0o711)
        cmd = [shutil.which("setpriv", path=_PATH)] + _setpriv("root", uid)[1:] + cmd
      env.update(HOME=cwd, TMPDIR=cwd)
    out_path, err_path = os.path.join(outer, "stdout"), os.path.join(outer, "stderr")
    with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f, open(code_path, "rb") as code_f:
      proc = subprocess.Popen(cmd, stdin=code_f, stdout=out_f, stderr=err_f, cwd=cwd, env=env, process_group=0,
                              close_fds=True, pass_fds=(status_w,))
    os.close(status_w)
    status_w = -1
    started = _wait_ready(status_r, startup_timeout_s)
    if started is not True:
      _kill_group(proc)
      err = _decode(err_path, 1 << 16)[0].strip()
      why = (f"was not ready within startup_timeout_s={startup_timeout_s:g}s (machine overloaded? raise it)"
             if started is None else f"exited with code {proc.returncode} before the program started")
      raise SandboxUnavailable(f"the sandbox (isolation={mode!r}, {variant}) could not start {interp.executable}: it "
                               f"{why}; stderr: {err[-1500:]!r}. Mounted read-only for it: "
                               f"{[d for _, d in interp.binds]}.{_readable_hint(mode, interp)}")
    start = time.monotonic()
    timed_out, cpu_used = _wait_with_cpu(proc, timeout_s)
    wall = time.monotonic() - start
    _kill_group(proc)  # even on success: stray children must not outlive the program
    stdout, out_size = _decode(out_path, max_output_bytes)
    stderr_raw, err_size = _decode(err_path, max_output_bytes + 4096)
    r = _classify(proc.returncode, timed_out, mode == "namespace", stdout, stderr_raw, out_size, err_size,
                  max_output_bytes, timeout_s, cpu_s, memory_mb, wall, cpu_used)
    return dataclasses.replace(r, isolation=mode, warning=_rlimits_warning(landlock) if shared_host else "")
  finally:
    if proc is not None and proc.returncode is None:
      _kill_group(proc)
    for fd in (status_r, status_w):
      if fd >= 0:
        os.close(fd)
    shutil.rmtree(outer, ignore_errors=True)


def _readable_hint(mode: str, interp: _Interpreter) -> str:
  if mode == "rlimits" and os.geteuid() == 0:
    return (" As root, isolation='rlimits' runs programs as a fresh unprivileged uid, so the interpreter and "
            f"{[d for _, d in interp.binds]} must be readable and searchable by others (e.g. a venv under /opt), or "
            "use isolation='namespace'.")
  return ""


def _wait_ready(fd: int, timeout: float):
  """True when the bootstrap reported ready, False when it exited first, None on timeout."""
  deadline = time.monotonic() + timeout
  while True:
    left = deadline - time.monotonic()
    if left <= 0:
      return None
    ready, _, _ = select.select([fd], [], [], left)
    if ready:
      return os.read(fd, 1) == b"S"


def _wait_with_cpu(proc: subprocess.Popen, timeout_s: float) -> tuple[bool, float]:
  """Waits up to timeout_s for `proc` and reaps it with wait4: (timed out, CPU seconds of the process and of the
  descendants it reaped, i.e. the program's, which runs under the wrapper in namespace mode). `_classify` reads it
  beside the wall time to tell a kill by RLIMIT_CPU: wall time alone misses it (start-up CPU counts before the clock
  starts, and threads spend CPU time faster than wall time)."""
  deadline = time.monotonic() + timeout_s
  try:
    pidfd = os.pidfd_open(proc.pid)
  except (AttributeError, OSError):  # no pidfd (old kernel): poll
    pidfd = -1
  try:
    while True:
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        proc.returncode = os.waitstatus_to_exitcode(status)
        return False, usage.ru_utime + usage.ru_stime
      left = deadline - time.monotonic()
      if left <= 0:
        return True, 0.0
      if pidfd >= 0:
        select.select([pidfd], [], [], left)
      else:
        time.sleep(min(0.005, left))
  finally:
    if pidfd >= 0:
      os.close(pidfd)


def _kill_group(proc: subprocess.Popen) -> None:
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  proc.wait()


def _decode(path: str, limit: int) -> tuple[str, int]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    data = f.read(limit)
  return data.decode("utf-8", "replace"), size


def _classify(rc: int, timed_out: bool, use_ns: bool, stdout: str, stderr_raw: str, out_size: int, err_size: int,
              max_out: int, timeout_s: float, cpu: int, memory_mb: int, wall: float, cpu_used: float) -> ExecResult:
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
  # RLIMIT_CPU (hard == soft) ends the program with SIGKILL once its CPU time reaches the limit. A SIGKILL after that
  # much CPU time (threads spend it faster than wall time) or wall time (the CPU time read back can fall short of the
  # limit when many sandboxes run at once) is taken for it; a SIGKILL before either is something else's.
  if sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and max(cpu_used, wall) >= cpu - 0.05):
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
  """Runs many programs concurrently in a bounded pool of threads (each waits on its own process); keeps order.
  SandboxUnavailable from any of them propagates."""
  if not codes:
    return []
  check_sandbox(limits.get("isolation", "auto"), limits.get("python"))  # fail once, early, before the pool
  workers = max_workers or max(1, min(len(codes), (os.cpu_count() or 1) * 2))
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(functools.partial(_run_one, limits=limits), codes))


def _run_one(code: str, limits: dict) -> ExecResult:
  return run_program(code, **limits)
