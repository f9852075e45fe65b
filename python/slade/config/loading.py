"""Reading and writing configs: YAML / JSON files (duplicate keys and syntax errors reported with file and line),
nested dicts to dataclasses with type checks, dotted overrides from the command line, old keys mapped to new ones.
Nothing here checks values beyond their type: validation.py does."""
from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
import warnings
from pathlib import Path

import yaml

from slade.config.errors import ConfigError, DeprecatedKeyWarning
from slade.config.schema import RENAMED, Config, hints

# ---------------------------------------------------------------- types


def _non_none(hint) -> tuple:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return tuple(a for a in args if a is not type(None))


def _accepts_str(hint) -> bool:
    return any(a is str or (typing.get_origin(a) is typing.Literal and any(isinstance(v, str)
                                                                           for v in typing.get_args(a)))
               for a in _non_none(hint))


def _choices(args) -> str:
    return ", ".join(repr(a) for a in args)


def coerce(value, hint, path: str, strict: bool = False):
    """`value` (already YAML-typed) checked against the field's type hint and converted to it. strict=True (used on
    configs built in Python) accepts no strings for numbers."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, path, strict)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return choice
        raise ConfigError(f"{path}: got {value!r}, must be one of {_choices(args)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [coerce(v, args[0], f"{path}[{i}]", strict) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and not strict:  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str) or (not strict and isinstance(value, (int, float)) and not isinstance(value, bool)):
            return str(value)
    raise ConfigError(f"{path}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


# ---------------------------------------------------------------- old keys


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"config key {old} is now {new}: {old} still works but will be removed", DeprecatedKeyWarning,
                  stacklevel=4)


def migrate(data: dict, warn: bool = True) -> dict:
    """A copy of the nested config dict with the old keys of RENAMED moved to their new places."""
    data = copy.copy(data)
    for old, new in RENAMED.items():
        *old_parents, old_leaf = old.split(".")
        source = data
        for name in old_parents:
            source = source.get(name) if isinstance(source, dict) else None
        if not isinstance(source, dict) or old_leaf not in source:
            continue
        if old_parents:  # copy the section before changing it
            source = data[old_parents[0]] = dict(source)
        value = source.pop(old_leaf)
        new_section, new_leaf = new.split(".")
        target = data.get(new_section)
        if target is None:
            target = {}
        if not isinstance(target, dict):
            continue  # from_dict reports the section that is not a mapping
        target = data[new_section] = dict(target)
        if new_leaf in target and target[new_leaf] != value:
            raise ConfigError(f"{old}={value!r} and {new}={target[new_leaf]!r} both given: {old} is now {new}, "
                              f"keep only {new}")
        target[new_leaf] = value
        if warn:
            _deprecated(old, new)
    return data


# ---------------------------------------------------------------- dicts <-> dataclasses


def from_dict(cls, data: dict, prefix: str = "", warn: bool = True):
    """A `cls` dataclass from nested dicts; unknown keys are errors naming their dotted path. On the whole Config,
    old keys (RENAMED) are moved to their new places first, with a DeprecatedKeyWarning when warn=True."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    if cls is Config and not prefix:
        data = migrate(data, warn)
    types_, kwargs = hints(cls), {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in types_:
            raise ConfigError(f"unknown config key {path!r}")
        hint = types_[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, {} if value is None else value, f"{path}.", warn)
        else:
            kwargs[key] = coerce(value, hint, path)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------- files


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the ordinary constructor reports it
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise ConfigError(f"{loader.name}:{line}: duplicate key {key!r} (first given at line {first})")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, name: str):
    loader = _UniqueKeyLoader(text)
    loader.name = name  # marks (and so error messages) name the file
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        what = str(err.problem or err.context)
        if err.context and err.problem and err.context_mark is not None:
            what += f" ({err.context} that starts at line {err.context_mark.line + 1})"
        raise ConfigError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def parse_json(text: str, name: str):
    def unique(pairs):
        out = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(f"{name}: duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{name}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None


def read_file(path: str | Path) -> dict:
    """The nested dict of a .yaml/.yml/.json file (an empty file is {})."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    data = parse_json(text, str(p)) if p.suffix == ".json" else parse_yaml(text, str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def from_file(path: str | Path, warn: bool = True) -> Config:
    """Defaults updated from a file; types checked, values not (see validation.validate)."""
    try:
        return from_dict(Config, read_file(path), warn=warn)
    except ConfigError as err:
        if str(err).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {err}") from None


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


# ---------------------------------------------------------------- overrides


def override(cfg, dotted: str, raw: str):
    """Sets the field at `dotted` (e.g. 'train.lr'; '-' reads as '_') from a command-line string, parsed as YAML
    ('1e-3', 'null', '[1, 5]', 'true') and checked against the field's type. Old keys (RENAMED, e.g. train.seed,
    out_dir) set their new field, with a DeprecatedKeyWarning. Values are not validated here."""
    dotted = dotted.strip().replace("-", "_")
    if dotted in RENAMED:
        _deprecated(dotted, RENAMED[dotted])
        dotted = RENAMED[dotted]
    *parents, leaf = dotted.split(".")
    target, walked = cfg, []
    for name in parents:
        walked.append(name)
        if not dataclasses.is_dataclass(target) or name not in hints(type(target)):
            raise ConfigError(f"unknown config key {'.'.join(walked)!r}")
        target = getattr(target, name)
    types_ = hints(type(target)) if dataclasses.is_dataclass(target) else {}
    if leaf not in types_ or dataclasses.is_dataclass(types_[leaf]):
        raise ConfigError(f"unknown config field {dotted!r}")
    hint = types_[leaf]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{dotted}: cannot parse {raw!r} ({str(err).splitlines()[0]})") from None
    if isinstance(value, (bool, int, float)) and _accepts_str(hint):
        value = raw  # a path or name that merely looks like a number or a boolean stays as typed
    setattr(target, leaf, coerce(value, hint, dotted))
    return cfg
