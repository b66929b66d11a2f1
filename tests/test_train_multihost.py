"""Multi-host code paths on localhost: 2 processes x 4 CPU devices (JAX CPU collectives over gloo) train exactly as
1 process x 8 devices."""
import json
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).parent / "helpers" / "multihost_train.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _losses(proc: subprocess.Popen) -> list:
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  return json.loads(out.strip().splitlines()[-1])["losses"]


def test_two_processes_match_one_process():
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), "2", port], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  multi = [_losses(p) for p in procs]
  single = _losses(subprocess.Popen([sys.executable, str(WORKER), "0", "1", "0"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True))
  assert multi[0] == multi[1]  # every process sees the same global loss
  assert len(single) == 3 and single[0] > single[-1]  # it trains
  for a, b in zip(single, multi[0]):
    assert abs(a - b) <= 1e-5 * abs(a), (single, multi[0])
