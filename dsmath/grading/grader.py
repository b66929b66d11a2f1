"""Answer extraction and equivalence grading.

Two grading modes (registry `GRADERS`):
  "math_verify" (default): math-verify 0.9.0 (`parse` of `\\boxed{answer}` on both sides, then `verify(gold, pred)`),
    which compares sympy expressions, sets, intervals, matrices and equations with relative float rounding (6 digits).
  "paper": DeepSeekMath's looser published rules (their evaluation/eval/eval_utils.py `math_equal`), re-implemented:
    string match after normalisation; numbers compared with absolute tolerance 1e-3 and accepted if the prediction
    equals the reference, reference/100 or reference*100 (percent confusion); tuples/intervals compared elementwise
    ignoring bracket types; pmatrix/bmatrix elementwise; "x = 5" vs "5" when the left side is a short variable name;
    equations compared as lhs-rhs up to sign; otherwise sympy `simplify(a - b) == 0` or numeric closeness (abs 1e-3).
  Where they differ (the paper mode accepts, math-verify rejects): 0.5 vs 50 (percent rule); 3.1416 vs \\pi and other
  numbers within 1e-3 absolute (math-verify rounds to 6 significant digits); [1,2) vs (1,2) (brackets ignored);
  x=5 vs 5 only via the short-lhs rule in both, but the paper mode also accepts 2x-y=1 vs y=2x-1.
  Where the paper mode rejects and math-verify accepts: answers the paper's LaTeX parser cannot read but math-verify
  can (sets with \\cup, \\infty intervals, \\text{} wrapped choices are handled by math-verify's normaliser).

Grading a pair runs in a worker process (`Grader`, a persistent pool) with a hard per-answer time limit: a worker that
exceeds it is killed and replaced and the pair is graded False, so pathological LaTeX cannot hang an evaluation.
Identical normalised strings are accepted in the parent without a round trip (the fast path).
"""
from __future__ import annotations

import atexit
import functools
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import subprocess
import sys
import threading
import time
from typing import Callable, Iterable, Sequence

# ---------------------------------------------------------------------------------------------------------------------
# Extraction.

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE_RE = re.compile(r"\\boxed ([^\s$]+)")


def extract_last_boxed(text: str) -> str | None:
  """Content of the last \\boxed{...} or \\fbox{...} (braces nest), or of a final `\\boxed 5`; None if absent."""
  if text is None:
    return None
  matches = list(_BOX_RE.finditer(text))
  for m in reversed(matches):
    depth, i = 1, m.end()
    while i < len(text) and depth:
      c = text[i]
      if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
        i += 2
        continue
      depth += (c == "{") - (c == "}")
      i += 1
    if depth == 0:
      return text[m.end():i - 1].strip()
  spaced = _BOX_SPACE_RE.findall(text)
  return spaced[-1].strip() if spaced else None


_ANSWER_IS_RE = re.compile(
    r"(?:the\s+final\s+answer\s+is|final\s+answer\s*(?:is)?\s*[:：]|the\s+answer\s+is|answer\s*[:：]|答案是|答案为|答案[:：])"
    r"\s*[:：]?\s*(.+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _strip_sentence(ans: str) -> str:
  ans = ans.strip()
  # "The final answer is $x$. I hope it is correct." keeps "$x$"; cut at a sentence end that follows the answer.
  m = re.match(r"^\$([^$]+)\$", ans)
  if m:
    return m.group(1).strip()
  ans = re.split(r"(?<!\d)\.(?:\s|$)|\n|。", ans, maxsplit=1)[0]
  return ans.strip().strip("$").strip().rstrip(".").strip()


def extract_answer(text: str, *, fallback_last_number: bool = True) -> str | None:
  """The final answer of a free-text solution.

  Order: last \\boxed{}/\\fbox{}; the last "the (final) answer is ..." / "Final Answer: ..." / "答案是 ..." phrase;
  then (if `fallback_last_number`) the last number in the text. None if nothing is found.
  """
  if not text:
    return None
  boxed = extract_last_boxed(text)
  if boxed is not None:
    return boxed
  phrases = _ANSWER_IS_RE.findall(text)
  if phrases:
    tail = phrases[-1]
    while (m := _ANSWER_IS_RE.search(tail)) is not None:  # "Final Answer: The final answer is $x$" -> "$x$"
      tail = m.group(1)
    ans = _strip_sentence(tail)
    inner = extract_last_boxed(ans)
    if ans:
      return inner if inner is not None else ans
  if fallback_last_number:
    nums = _NUMBER_RE.findall(text.replace("$", " "))
    if nums:
      return nums[-1].rstrip(".,")
  return None


def extract_gsm8k_gold(answer_field: str) -> str:
  """GSM8K gold: the text after '#### ' (commas kept, e.g. '1,000')."""
  if "####" not in answer_field:
    raise ValueError(f"GSM8K answer has no '####' marker: {answer_field[-80:]!r}")
  return answer_field.rsplit("####", 1)[1].strip()


_CHOICE_RE = re.compile(r"(?:^|[^A-Za-z])\(?([A-H])\)?(?=$|[^A-Za-z])")


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
  """The chosen option letter(s), sorted and unique ("B", or "AD" for several).

  From the boxed answer or the "answer is" phrase first (all letters in it), else the last standalone letter.
  """
  if not text:
    return None
  for cand in (extract_last_boxed(text), extract_answer(text, fallback_last_number=False)):
    if cand:
      cand = re.sub(r"\\(?:text|mathrm|textbf)\{([^}]*)\}", r"\1", cand)
      found = [c for c in _CHOICE_RE.findall(cand) if c in letters]
      if found:
        return "".join(sorted(set(found)))
  found = [c for c in _CHOICE_RE.findall(text) if c in letters]
  return found[-1] if found else None


def extract_program_output(stdout: str) -> str | None:
  """PoT answer: the last non-empty line the program printed."""
  lines = [ln.strip() for ln in (stdout or "").splitlines() if ln.strip()]
  return lines[-1] if lines else None


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation shared by both modes (cheap, string level).

_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def normalize_answer(ans: str) -> str:
  """A light canonical string: used for the exact-match fast path and as the key that groups identical answers."""
  s = str(ans).strip()
  s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
  s = re.sub(r"\\(?:left|right)\b", "", s)
  s = s.replace("dfrac", "frac").replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "")
  s = s.replace("\\$", "").replace("$", "")
  s = re.sub(r"\\text\{\s*\}", "", s)
  s = re.sub(r"\s+", "", s)
  s = s.rstrip(".")
  if _THOUSANDS_RE.match(s):
    s = s.replace(",", "")
  return s


# ---------------------------------------------------------------------------------------------------------------------
# Equivalence functions (run inside worker processes).

def _mv_equal(pred: str, gold: str, timeout_s: int) -> bool:
  from math_verify import parse, verify  # imported in the worker
  g = normalize_answer(gold) if _THOUSANDS_RE.match(gold.strip()) else gold
  p = normalize_answer(pred) if _THOUSANDS_RE.match(pred.strip()) else pred
  gp = parse("\\boxed{" + g + "}", parsing_timeout=timeout_s)
  pp = parse("\\boxed{" + p + "}", parsing_timeout=timeout_s)
  if not gp or not pp:
    return False
  return bool(verify(gp, pp, timeout_seconds=timeout_s))


def _paper_strip(s: str) -> str:
  s = normalize_answer(s)
  s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
  s = re.sub(r"\\mbox\{([^{}]*)\}", r"\1", s)
  s = s.replace("\\%", "%").replace("\\percent", "%")
  s = re.sub(r"^\\frac(\d)(\d)$", r"\\frac{\1}{\2}", s)
  s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)
  if s.startswith("."):
    s = "0" + s
  return s


def _paper_number(s: str) -> float | None:
  s = s.replace(",", "")
  pct = s.endswith("%")
  if pct:
    s = s[:-1].rstrip("\\")
  try:
    v = float(s)
  except ValueError:
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", s) or re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    if not m or float(m.group(3)) == 0:
      return None
    v = float(m.group(2)) / float(m.group(3)) * (-1 if m.group(1) else 1)
  return v / 100 if pct else v


def _split_top(s: str, sep: str) -> list[str]:
  parts, depth, cur = [], 0, []
  for c in s:
    depth += (c in "([{") - (c in ")]}")
    if c == sep and depth == 0:
      parts.append("".join(cur))
      cur = []
    else:
      cur.append(c)
  parts.append("".join(cur))
  return parts


def _to_sympy(s: str, timeout_s: int):
  from math_verify import parse
  got = parse("$" + s + "$", parsing_timeout=timeout_s)
  return got[0] if got else None


def _paper_symbolic(a: str, b: str, timeout_s: int) -> bool:
  import sympy
  x, y = _to_sympy(a, timeout_s), _to_sympy(b, timeout_s)
  if x is None or y is None or isinstance(x, str) or isinstance(y, str):
    return False
  try:
    if sympy.simplify(x - y) == 0:
      return True
  except Exception:  # sympy raises anything on mismatched types (sets minus numbers, ...)
    pass
  try:
    return math.isclose(complex(sympy.N(x)).real, complex(sympy.N(y)).real, abs_tol=1e-3) and \
        math.isclose(complex(sympy.N(x)).imag, complex(sympy.N(y)).imag, abs_tol=1e-3)
  except Exception:
    return False


def _paper_equal(pred: str, gold: str, timeout_s: int, depth: int = 0) -> bool:
  p, g = _paper_strip(pred), _paper_strip(gold)
  if p == g:
    return True
  pn, gn = _paper_number(p), _paper_number(g)
  if pn is not None and gn is not None:
    return any(math.isclose(pn, r, abs_tol=1e-3) for r in (gn, gn / 100, gn * 100))
  if not p:
    return False
  if depth < 3:
    br = re.compile(r"^[(\[].*[)\]]$")
    if br.match(p) and br.match(g):
      pp, gp = _split_top(p[1:-1], ","), _split_top(g[1:-1], ",")
      if len(pp) == len(gp) and all(_paper_equal(a, b, timeout_s, depth + 1) for a, b in zip(pp, gp)):
        return True
    mat = re.compile(r"^\\begin\{[pb]matrix\}(.*)\\end\{[pb]matrix\}$")
    pm, gm = mat.match(p), mat.match(g)
    if pm and gm:
      prow = [r for r in pm.group(1).split("\\\\") if r]
      grow = [r for r in gm.group(1).split("\\\\") if r]
      if len(prow) == len(grow) and all(
          len(a.split("&")) == len(b.split("&")) and
          all(_paper_equal(x, y, timeout_s, depth + 1) for x, y in zip(a.split("&"), b.split("&")))
          for a, b in zip(prow, grow)):
        return True
    if p.count("=") == 1 and g.count("=") == 1:
      pl, pr = p.split("=")
      gl, gr = g.split("=")
      d1, d2 = f"{pl}-({pr})", f"{gl}-({gr})"
      if _paper_symbolic(d1, d2, timeout_s) or _paper_symbolic(f"-({d1})", d2, timeout_s):
        return True
    elif p.count("=") == 1 and len(p.split("=")[0]) <= 2 and "=" not in g:
      return _paper_equal(p.split("=")[1], g, timeout_s, depth + 1)
    elif g.count("=") == 1 and len(g.split("=")[0]) <= 2 and "=" not in p:
      return _paper_equal(p, g.split("=")[1], timeout_s, depth + 1)
  return _paper_symbolic(p, g, timeout_s)


GRADERS: dict[str, Callable[[str, str, int], bool]] = {"math_verify": _mv_equal, "paper": _paper_equal}


def answers_equal_inprocess(pred: str, gold: str, mode: str = "math_verify", timeout_s: int = 5,
                            fast_path: bool = True) -> bool:
  """Equivalence of two extracted answers in this process (no hard time limit; use `Grader` for that)."""
  if mode not in GRADERS:
    raise ValueError(f"unknown grading mode {mode!r}; choose from {sorted(GRADERS)}")
  if pred is None or gold is None:
    return False
  if fast_path and normalize_answer(pred) == normalize_answer(gold):
    return True
  try:
    return GRADERS[mode](pred, gold, timeout_s)
  except Exception:  # a grader crash on odd input means "not shown equal"
    return False


# ---------------------------------------------------------------------------------------------------------------------
# Worker pool.

def _worker_main(conn, soft_timeout_s: int) -> None:
  """Loop of a grading worker: receive a batch of (pred, gold, mode), send back verdicts; None stops it."""
  import warnings
  warnings.filterwarnings("ignore")
  import math_verify  # noqa: F401  (warm import before the first task)
  conn.send("ready")  # the parent's per-answer clock starts only after this slow import
  while True:
    try:
      msg = conn.recv()
    except EOFError:
      return
    if msg is None:
      return
    conn.send([answers_equal_inprocess(p, g, mode, soft_timeout_s, fast) for p, g, mode, fast in msg])


_STARTUP_TIMEOUT_S = 300


class _Worker:
  """A grading worker as a plain subprocess (`python -m dsmath.grading.grader FD_IN FD_OUT SOFT`) talking over two
  pipes with multiprocessing's framing. Not multiprocessing.Process: that would re-import the caller's __main__
  (spawn/forkserver) or fork a parent that may hold JAX threads."""

  def __init__(self, soft_timeout_s: int):
    c2p_r, c2p_w = os.pipe()
    p2c_r, p2c_w = os.pipe()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    self.proc = subprocess.Popen([sys.executable, "-m", "dsmath.grading.grader", str(p2c_r), str(c2p_w),
                                  str(soft_timeout_s)], pass_fds=(p2c_r, c2p_w), env=env, stdin=subprocess.DEVNULL)
    os.close(p2c_r)
    os.close(c2p_w)
    self.send_conn = multiprocessing.connection.Connection(p2c_w, readable=False)
    self.recv_conn = multiprocessing.connection.Connection(c2p_r, writable=False)
    # Wait for the worker's imports: on a loaded machine they take seconds and must not count as grading time.
    if not self.recv_conn.poll(_STARTUP_TIMEOUT_S) or self.recv_conn.recv() != "ready":
      self.kill()
      raise RuntimeError(f"grading worker did not start within {_STARTUP_TIMEOUT_S}s")

  def kill(self) -> None:
    self.proc.kill()
    self.proc.wait()
    self.send_conn.close()
    self.recv_conn.close()

  def stop(self) -> None:
    try:
      self.send_conn.send(None)
    except OSError:
      pass
    try:
      self.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
      pass
    self.kill()


class Grader:
  """A persistent pool of grading worker processes with a hard per-answer time limit.

  `equal_many(pairs)` grades (pred_answer, gold_answer) pairs of already-extracted answers; `grade_many(texts, golds)`
  extracts first. Use as a context manager or call `close()`.
  """

  def __init__(self, num_workers: int | None = None, *, timeout_s: float = 10.0, batch_size: int = 8,
               mode: str = "math_verify"):
    if mode not in GRADERS:
      raise ValueError(f"unknown grading mode {mode!r}; choose from {sorted(GRADERS)}")
    self.mode = mode
    self.timeout_s = float(timeout_s)
    self.batch_size = int(batch_size)
    self.num_workers = int(num_workers or max(1, min(4, os.cpu_count() or 1)))
    self._workers: list[_Worker] = []
    self._lock = threading.Lock()
    self.timeouts = 0  # how many answers hit the hard limit (reported in evaluation summaries)

  def _spawn(self) -> _Worker:
    # math-verify's own alarm (soft) fires first; the parent's kill at timeout_s is the hard stop.
    return _Worker(max(1, int(self.timeout_s / 2)))

  def _ensure(self):
    while len(self._workers) < self.num_workers:
      self._workers.append(self._spawn())

  def close(self) -> None:
    for w in self._workers:
      w.stop()
    self._workers = []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def equal_many(self, pairs: Sequence[tuple[str | None, str | None]], mode: str | None = None, *,
                 fast_path: bool = True) -> list[bool]:
    """Verdicts for (pred, gold) answer pairs, in order. None on either side is False.

    fast_path: accept identical normalised strings without asking the grader (turn off to test the grader itself).
    """
    mode = mode or self.mode
    if mode not in GRADERS:
      raise ValueError(f"unknown grading mode {mode!r}; choose from {sorted(GRADERS)}")
    results: list[bool | None] = [None] * len(pairs)
    todo = []
    for i, (p, g) in enumerate(pairs):
      if p is None or g is None:
        results[i] = False
      elif fast_path and normalize_answer(p) == normalize_answer(g):
        results[i] = True
      else:
        todo.append(i)
    if todo:
      with self._lock:
        self._run(todo, pairs, mode, results, fast_path)
    return [bool(r) for r in results]

  def _run(self, todo: list[int], pairs, mode: str, results: list, fast_path: bool) -> None:
    self._ensure()
    batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
    queue = list(reversed(batches))
    busy: dict[int, tuple[list[int], float]] = {}  # worker index -> (batch, deadline)
    while queue or busy:
      for w in range(len(self._workers)):
        if w not in busy and queue:
          batch = queue.pop()
          self._workers[w].send_conn.send([(pairs[i][0], pairs[i][1], mode, fast_path) for i in batch])
          busy[w] = (batch, time.monotonic() + self.timeout_s * len(batch))
      conns = {self._workers[w].recv_conn: w for w in busy}
      next_deadline = min(d for _, d in busy.values())
      ready = multiprocessing.connection.wait(list(conns), timeout=max(0.0, next_deadline - time.monotonic()))
      for conn in ready:
        w = conns[conn]
        batch, _ = busy.pop(w)
        try:
          out = conn.recv()
        except (EOFError, OSError):  # the worker died (e.g. a C-level crash): retry its items one by one
          self._replace(w)
          if len(batch) > 1:
            queue.extend([i] for i in batch)
          else:
            self._give_up(batch, results)
          continue
        for i, v in zip(batch, out):
          results[i] = v
      now = time.monotonic()
      for w, (batch, deadline) in list(busy.items()):
        if now >= deadline:
          busy.pop(w)
          self._replace(w)
          if len(batch) > 1:  # find the slow item: regrade this batch one answer at a time
            queue.extend([i] for i in batch)
          else:
            self._give_up(batch, results)

  def _give_up(self, batch: list[int], results: list) -> None:
    for i in batch:
      results[i] = False
      self.timeouts += 1

  def _replace(self, w: int) -> None:
    self._workers[w].kill()
    self._workers[w] = self._spawn()

  def grade_many(self, prediction_texts: Sequence[str], gold_answers: Sequence[str], mode: str | None = None,
                 extractor: Callable[[str], str | None] = extract_answer) -> list[bool]:
    if len(prediction_texts) != len(gold_answers):
      raise ValueError(f"{len(prediction_texts)} predictions but {len(gold_answers)} gold answers")
    return self.equal_many([(extractor(t), g) for t, g in zip(prediction_texts, gold_answers)], mode)


@functools.lru_cache(maxsize=1)
def default_grader() -> Grader:
  """A process-wide Grader, created on first use and closed at exit (for the one-call `grade` API)."""
  g = Grader()
  atexit.register(g.close)
  return g


def grade(prediction_text: str, gold_answer: str, mode: str = "math_verify") -> bool:
  """True when the final answer extracted from `prediction_text` is equivalent to `gold_answer` under `mode`."""
  return default_grader().grade_many([prediction_text], [gold_answer], mode)[0]


def grade_answers(pairs: Iterable[tuple[str | None, str | None]], mode: str = "math_verify") -> list[bool]:
  return default_grader().equal_many(list(pairs), mode)


class _DuplexConn:
  """The worker's end: receive on one pipe, send on the other."""

  def __init__(self, fd_in: int, fd_out: int):
    self._in = multiprocessing.connection.Connection(fd_in, writable=False)
    self._out = multiprocessing.connection.Connection(fd_out, readable=False)

  def recv(self):
    return self._in.recv()

  def send(self, obj) -> None:
    self._out.send(obj)


if __name__ == "__main__":
  _worker_main(_DuplexConn(int(sys.argv[1]), int(sys.argv[2])), int(sys.argv[3]))
