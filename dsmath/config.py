"""One config convention for every stage: a typed schema of frozen dataclasses, resolved once at the entry point.

A stage declares its config as nested frozen dataclasses whose defaults are the only defaults (declared once). Config
files stay big_vision-style `get_config()` functions returning an `ml_collections.ConfigDict`, built from
`config_dict(Schema)` so every key exists for `--config.a.b=...` overrides. The stage's `run` calls
`resolve(Schema, config)` once and passes the typed result down; nothing downstream casts or looks up defaults.

`resolve` walks the schema by its type hints and fails on
  - an unknown key at any depth, naming the full path (`config.rl.loss.bogus`) and the valid keys;
  - a wrong-typed value, naming the path, the expected type and the value (`config.model.num_layers` wants int,
    got str '2'); bools are not ints, ints are accepted as floats, lists as tuples;
  - a non-finite float (NaN / inf): hyper-parameters are finite or the run would silently train on NaN;
  - a value outside a `Literal[...]`;
  - a dataclass's own `__post_init__` check (a ValueError), re-raised with the path prepended.

Field hooks (dataclasses.field metadata):
  "resolve": fn(value, path) -> value, for a field with its own resolution (e.g. a model spec with a preset);
  "config": the ConfigDict form of the default when it is not the dataclass default itself.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

import ml_collections

T = TypeVar("T")


class ConfigError(KeyError, ValueError):
  """A config value that is unknown, wrong-typed or out of range; the message names its full key path. Both a
  KeyError (an unknown key) and a ValueError (a bad value), so either kind of handler catches it."""

  def __str__(self):
    return str(self.args[0]) if self.args else ""


def to_dict(value: Any, *, keep_tuples: bool = False) -> Any:
  """ConfigDicts, dataclasses and nested mappings -> plain dicts and lists (other values unchanged); with
  keep_tuples, tuples stay tuples (what config files need: config_flags can override a tuple field from the command
  line, `--config.mesh.shape='(1,4,1)'`, but not a list one)."""
  if isinstance(value, ml_collections.ConfigDict):
    return to_dict(value.to_dict(), keep_tuples=keep_tuples)
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: to_dict(getattr(value, f.name), keep_tuples=keep_tuples) for f in dataclasses.fields(value)}
  if isinstance(value, Mapping):
    return {k: to_dict(v, keep_tuples=keep_tuples) for k, v in value.items()}
  if isinstance(value, tuple) and keep_tuples:
    return tuple(to_dict(v, keep_tuples=True) for v in value)
  if isinstance(value, (list, tuple)):
    return [to_dict(v, keep_tuples=keep_tuples) for v in value]
  return value


def _type_name(tp) -> str:
  if tp is type(None):
    return "None"
  origin = typing.get_origin(tp)
  if origin is Literal:
    return f"one of {list(typing.get_args(tp))}"
  if origin in (Union, types.UnionType):
    return " or ".join(_type_name(a) for a in typing.get_args(tp))
  if origin is not None:
    return repr(tp).replace("typing.", "")
  return getattr(tp, "__name__", repr(tp))


def _fail(path: str, tp, value) -> ConfigError:
  return ConfigError(f"{path} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _coerce(tp, value, path: str):
  """value checked (and lists turned to tuples, mappings to dataclasses) against the type hint tp."""
  if tp is Any:
    return to_dict(value)
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if dataclasses.is_dataclass(tp):
    if isinstance(value, tp):
      return value
    return resolve(tp, value, path)
  if origin is Literal:
    if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
      raise ConfigError(f"{path} must be one of {list(args)}, got {value!r}")
    return value
  if origin in (Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    for a in args:
      if a is type(None):
        continue
      try:
        return _coerce(a, value, path)
      except ConfigError:
        continue  # the next alternative; the message below names them all
    raise _fail(path, tp, value)
  if tp is bool:
    if not isinstance(value, bool):
      raise _fail(path, tp, value)
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise _fail(path, tp, value)
    return int(value)
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise _fail(path, tp, value)
    if not math.isfinite(value):
      raise ConfigError(f"{path} must be a finite number, got {value!r}")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      raise _fail(path, tp, value)
    return value
  if tp is tuple:
    tp, origin, args = tuple[Any, ...], tuple, (Any, Ellipsis)
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise _fail(path, tp, value)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
      raise ConfigError(f"{path} must have {len(args)} entries ({_type_name(tp)}), got {list(value)!r}")
    return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
  if origin in (dict, collections.abc.Mapping):
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    if not isinstance(value, Mapping):
      raise _fail(path, tp, value)
    kt, vt = args if args else (Any, Any)
    return types.MappingProxyType({_coerce(kt, k, f"{path} key"): _coerce(vt, v, f"{path}.{k}")
                                   for k, v in value.items()})
  raise TypeError(f"{path}: the config schema uses a type dsmath.config cannot check: {tp!r} (a schema bug)")


def _hints(cls) -> dict:
  return typing.get_type_hints(cls)


def resolve(cls: type[T], given: Any = None, path: str = "config") -> T:
  """An instance of the dataclass `cls` from a mapping (ConfigDict, dict or None), checked at every depth."""
  try:
    return cls(**checked_fields(cls, given, path))
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:  # the dataclass's own checks, named by where it sits
    raise ConfigError(f"{path}: {e}") from None


def checked_fields(cls, given: Any = None, path: str = "config") -> dict:
  """The given fields of dataclass `cls`, each checked and converted (keys and types), without building `cls`."""
  if given is None:
    given = {}
  if isinstance(given, ml_collections.ConfigDict):
    given = given.to_dict()
  if dataclasses.is_dataclass(given) and not isinstance(given, type):
    given = to_dict(given)
  if not isinstance(given, Mapping):
    raise ConfigError(f"{path} must be a mapping of {sorted(f.name for f in dataclasses.fields(cls))}, "
                      f"got {type(given).__name__} {given!r}")
  fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
  unknown = sorted(set(given) - set(fields))
  if unknown:
    raise ConfigError(f"unknown key(s) {[f'{path}.{k}' for k in unknown]}; valid keys of {path}: {sorted(fields)}")
  hints = _hints(cls)
  kwargs = {}
  for name, f in fields.items():
    if name not in given:
      continue
    sub = f"{path}.{name}"
    hook = f.metadata.get("resolve")
    kwargs[name] = hook(given[name], sub) if hook else _coerce(hints[name], given[name], sub)
  for name, f in fields.items():
    hook = f.metadata.get("resolve")
    if name not in kwargs and hook and f.metadata.get("config") is not None:
      kwargs[name] = hook(f.metadata["config"], f"{path}.{name}")
  return kwargs


def config_dict(cls_or_instance) -> ml_collections.ConfigDict:
  """The ConfigDict form of a schema's defaults (or of a resolved instance): what `get_config()` files start from,
  so that every key exists for command-line overrides."""
  inst = cls_or_instance() if isinstance(cls_or_instance, type) else cls_or_instance

  def convert(value, f=None):
    if f is not None and "config" in f.metadata and isinstance(cls_or_instance, type):
      return to_dict(f.metadata["config"], keep_tuples=True)
    if dataclasses.is_dataclass(value):
      return {g.name: convert(getattr(value, g.name), g) for g in dataclasses.fields(value) if g.init}
    return to_dict(value, keep_tuples=True)

  return ml_collections.ConfigDict(convert(inst))


def field(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING, resolve=None, config=None):
  """A dataclass field with config hooks (see the module docstring)."""
  metadata = {}
  if resolve is not None:
    metadata["resolve"] = resolve
  if config is not None:
    metadata["config"] = config
  return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def sub(cls):
  """A nested-section field whose default is cls()."""
  return dataclasses.field(default_factory=cls)
