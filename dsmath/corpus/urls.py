"""URL canonicalisation and URL-level deduplication (run before scoring, as in the paper)."""
from __future__ import annotations

import urllib.parse
from typing import Iterable, Iterator

# Query parameters that only track the visitor; they never change the page content.
TRACKING_PARAMS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "ref", "ref_src", "_ga"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
  """A scheme-less canonical key for `url`: 'host/path?sorted_query'.

  Lower-cases the host, drops 'www.', default ports, user info, fragments, tracking parameters (utm_* and
  TRACKING_PARAMS), empty path segments, '.'/'..' segments and a trailing slash, and sorts the query; http and https
  map to the same key. Percent-escapes are normalised (decoded then re-quoted) so '%7E' == '~'.
  """
  if not isinstance(url, str) or not url.strip():
    raise ValueError(f"empty or non-string URL: {url!r}")
  raw = url.strip()
  if "://" not in raw:
    raw = "http://" + raw
  parts = urllib.parse.urlsplit(raw)
  host = (parts.hostname or "").rstrip(".")
  if not host:
    raise ValueError(f"URL without host: {url!r}")
  if host.startswith("www."):
    host = host[4:]
  try:
    port = parts.port
  except ValueError as e:
    raise ValueError(f"bad port in URL {url!r}") from e
  if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
    host = f"{host}:{port}"
  segments = []
  for seg in parts.path.split("/"):
    if seg in ("", "."):
      continue
    if seg == "..":
      if segments:
        segments.pop()
      continue
    segments.append(urllib.parse.quote(urllib.parse.unquote(seg), safe="~!$&'()*+,;=:@"))
  path = "/" + "/".join(segments)
  query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
           if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS]
  query.sort()
  key = host + (path if path != "/" else "")
  if query:
    key += "?" + urllib.parse.urlencode(query)
  return key


def url_domain(url: str) -> str:
  """The domain a page is grouped under for domain discovery: canonical host (no 'www.', no port)."""
  return canonical_url(url).split("/", 1)[0].split("?", 1)[0].split(":", 1)[0]


def url_path(url: str) -> str:
  """The canonical path of `url` ('/' for the root), used to match annotated path prefixes."""
  key = canonical_url(url).split("?", 1)[0]
  return "/" + key.split("/", 1)[1] if "/" in key else "/"


def pick_representative(a: dict, b: dict) -> dict:
  """Which of two pages with the same canonical URL survives: the lexicographically smallest original URL.

  Deterministic and associative/commutative, so a Beam CombinePerKey gives the same answer as a local loop.
  """
  return a if (a["url"], a["text"]) <= (b["url"], b["text"]) else b


def dedup_pages(pages: Iterable[dict]) -> Iterator[dict]:
  """Pages with duplicate canonical URLs removed (one representative per key, see pick_representative).

  Yields pages in first-seen order of their canonical key; each yielded page gains 'canonical_url' and 'domain'.
  """
  kept: dict[str, dict] = {}
  for page in pages:
    key = canonical_url(page["url"])
    kept[key] = pick_representative(kept[key], page) if key in kept else page
  for key, page in kept.items():
    yield with_url_keys(page, key)


def with_url_keys(page: dict, key: str | None = None) -> dict:
  """`page` plus its 'canonical_url' and 'domain' fields."""
  key = key or canonical_url(page["url"])
  return {**page, "canonical_url": key, "domain": url_domain(page["url"])}
