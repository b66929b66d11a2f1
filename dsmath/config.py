"""Config helpers shared by every stage: plain-dict views and unknown-key checks that list the valid keys."""
from typing import Any, Iterable, Mapping

import ml_collections


def to_dict(value: Any) -> Any:
  """ConfigDicts and nested mappings -> plain dicts (other values unchanged)."""
  if isinstance(value, ml_collections.ConfigDict):
    return value.to_dict()
  if isinstance(value, Mapping):
    return {k: to_dict(v) for k, v in value.items()}
  return value


def check_keys(where: str, given: Mapping, valid: Iterable[str]) -> None:
  """Fails on keys of `given` not in `valid`, naming them, where they are (a config path) and the valid keys."""
  given = to_dict(given)
  if not isinstance(given, Mapping):
    raise TypeError(f"{where} must be a mapping, got {type(given).__name__}")
  valid = set(valid)
  unknown = sorted(set(given) - valid)
  if unknown:
    raise KeyError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(valid)}")
