"""Domain discovery, human path annotations, positive-seed expansion and the iteration stop rule."""
from __future__ import annotations

import json
from typing import Iterable, Mapping

from dsmath.corpus import urls
from dsmath.files import write_text_atomic


def domain_table(pages: Iterable[tuple[str, bool]]) -> dict[str, tuple[int, int]]:
  """(domain, collected) pairs -> {domain: (collected, total)}."""
  table: dict[str, list[int]] = {}
  for domain, collected in pages:
    row = table.setdefault(domain, [0, 0])
    row[0] += int(collected)
    row[1] += 1
  return {d: (c, t) for d, (c, t) in table.items()}


def math_domains(table: Mapping[str, tuple[int, int]], threshold: float = 0.10) -> list[dict]:
  """Domains whose collected/total ratio is > threshold, as rows sorted by ratio (desc) then domain."""
  rows = [{"domain": d, "collected": c, "total": t, "ratio": c / t} for d, (c, t) in table.items() if t and c / t > threshold]
  return sorted(rows, key=lambda r: (-r["ratio"], r["domain"]))


def markdown_domain_table(rows: list[dict], annotations: Mapping[str, list[str]] | None = None) -> str:
  """The table a person annotates from: domain, collected, total, ratio, and prefixes already annotated."""
  lines = ["| domain | collected | total | ratio | annotated path prefixes |", "|---|---:|---:|---:|---|"]
  for r in rows:
    prefixes = ", ".join((annotations or {}).get(r["domain"], [])) or "(none yet)"
    lines.append(f"| {r['domain']} | {r['collected']} | {r['total']} | {r['ratio']:.1%} | {prefixes} |")
  return "\n".join(lines)


def load_annotations(path: str) -> dict[str, list[str]]:
  """Read a YAML or JSON file mapping domain -> list of math URL path prefixes (e.g. 'mathoverflow.net: [/questions]').

  Domains are canonicalised like page domains; prefixes must start with '/'. Errors name the file and the entry.
  """
  with open(path, encoding="utf-8") as f:
    raw = f.read()
  if path.endswith((".yaml", ".yml")):
    import yaml
    try:
      data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
      raise ValueError(f"{path}: malformed YAML: {e}") from e
  else:
    try:
      data = json.loads(raw)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from e
  data = data or {}
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a mapping domain -> list of path prefixes, got {type(data).__name__}")
  out: dict[str, list[str]] = {}
  for domain, prefixes in data.items():
    if not isinstance(domain, str) or not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
      raise ValueError(f"{path}: entry {domain!r}: expected a domain name mapped to a list of path strings")
    for p in prefixes:
      if not p.startswith("/"):
        raise ValueError(f"{path}: entry {domain!r}: path prefix {p!r} must start with '/'")
    out[urls.url_domain(domain)] = [p.rstrip("/") or "/" for p in prefixes]
  return out


def under_prefix(path: str, prefix: str) -> bool:
  """Segment-aware prefix match: '/q' matches '/q' and '/q/1', not '/qa'."""
  return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def annotated_positives(pages: Iterable[dict], selected: set[str], annotations: Mapping[str, list[str]],
                        math_domain_names: set[str]) -> list[dict]:
  """Pages under an annotated prefix of a discovered math domain that were NOT collected: new positives.

  `pages` carry 'canonical_url', 'domain', 'url'; `selected` holds canonical URLs collected this round.
  """
  out = []
  for page in pages:
    domain = page["domain"]
    if domain not in math_domain_names or page["canonical_url"] in selected:
      continue
    path = urls.url_path(page["url"])
    if any(under_prefix(path, p) for p in annotations.get(domain, ())):
      out.append(page)
  return out


def overlap(current: set[str], previous: set[str] | None) -> float | None:
  """Fraction of this round's collected pages that the previous round had already collected (None in round 1)."""
  if previous is None:
    return None
  return len(current & previous) / len(current) if current else 1.0


def should_stop(overlap_fraction: float | None, stop_overlap: float = 0.98) -> bool:
  """The paper's stop rule: stop once >= 98% of a round's data was already collected in the round before."""
  return overlap_fraction is not None and overlap_fraction >= stop_overlap


def write_annotation_template(path: str, rows: list[dict], annotations: Mapping[str, list[str]]) -> None:
  """A YAML file listing every discovered domain with its current prefixes, for a person to fill in."""
  lines = ["# domain -> list of URL path prefixes holding math pages (edit, then pass as domains.annotations)"]
  for r in rows:
    prefixes = annotations.get(r["domain"], [])
    lines.append(f"{r['domain']}: {json.dumps(prefixes)}  # collected {r['collected']}/{r['total']} ({r['ratio']:.1%})")
  write_text_atomic(path, "\n".join(lines) + "\n")
