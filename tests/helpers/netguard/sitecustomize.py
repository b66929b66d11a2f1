"""No network for a test: an audit hook that refuses every connection, datagram and name lookup leaving this machine
(loopback and unix sockets stay open: Beam's workers talk to their runner over gRPC on localhost).

A test puts this directory first on PYTHONPATH and sets DSMATH_NETGUARD=1, so every Python process it starts (Beam
workers, grading workers, ...) installs the hook at start-up; the test's own process calls `install()`. Each refusal
raises ConnectionRefusedError and is appended to $DSMATH_NETGUARD_LOG (pid, event, target), so an attempt whose error
a library swallowed still shows. Audit hooks cannot be removed: the hook does nothing while DSMATH_NETGUARD is not 1.
"""
import ipaddress
import os
import socket
import sys

_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
_SENDS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_installed = []


def _local(host) -> bool:
  if host is None or host in ("", b""):
    return True  # a passive (bind-any) lookup
  host = host.decode() if isinstance(host, bytes) else str(host)
  if host == "localhost" or host.endswith(".localhost"):
    return True
  try:
    ip = ipaddress.ip_address(host.split("%")[0])
  except ValueError:
    return False  # any other name would be resolved by a DNS server
  return ip.is_loopback or ip.is_unspecified


def _refuse(event: str, target) -> None:
  log = os.environ.get("DSMATH_NETGUARD_LOG")
  if log:
    with open(log, "a") as f:
      f.write(f"{os.getpid()} {event} {target!r}\n")
  raise ConnectionRefusedError(f"network access blocked by the test's guard: {event} {target!r}")


def _hook(event: str, args) -> None:
  if os.environ.get("DSMATH_NETGUARD") != "1":
    return
  if event in _SENDS and len(args) > 1 and getattr(args[0], "family", None) in (socket.AF_INET, socket.AF_INET6):
    if isinstance(args[1], tuple) and not _local(args[1][0]):
      _refuse(event, args[1])
  elif event in _LOOKUPS and args and not _local(args[0]):
    _refuse(event, args[0])


def install() -> None:
  """Adds the hook to this process (once)."""
  if not _installed:
    sys.addaudithook(_hook)
    _installed.append(True)


if os.environ.get("DSMATH_NETGUARD") == "1" and __name__ == "sitecustomize":
  install()
  # this file shadows any other sitecustomize on the path: run that one too
  here = os.path.dirname(os.path.abspath(__file__))
  for d in sys.path:
    other = os.path.join(d or ".", "sitecustomize.py")
    if os.path.abspath(d or ".") != here and os.path.isfile(other):
      with open(other) as f:
        exec(compile(f.read(), other, "exec"), {"__name__": "sitecustomize", "__file__": other})
      break
