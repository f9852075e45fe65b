"""The one way the CLI makes a config: preset or file, (checkpoint,) overrides, validation."""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from slade.config.builtin import DEFAULT_PRESET, read_preset
from slade.config.errors import ConfigError, DeprecatedKeyWarning
from slade.config.loading import from_dict, from_file, override
from slade.config.schema import PATH_FIELDS, Config, get, put
from slade.config.validation import validate


def load(path: str | Path | None) -> Config:
    """Defaults (path None) or defaults updated from a .yaml/.yml/.json file, validated."""
    return validate(Config() if path is None else from_file(path))


def from_checkpoint(saved: dict, base: Config) -> Config:
    """The config a checkpoint was trained with (its dict, or the checkpoint holding it under 'config'), except the
    PATH_FIELDS, which come from `base`: where data, weights and outputs live is the user's, not the checkpoint's.
    Old keys in the saved dict load silently. Not validated (build() validates after the overrides)."""
    if isinstance(saved.get("config"), dict):
        saved = saved["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecatedKeyWarning)
        cfg = from_dict(Config, saved)
    for path in PATH_FIELDS:
        put(cfg, path, get(base, path))
    return cfg


def _pair(item) -> tuple[str, str]:
    if isinstance(item, str):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        return key.strip(), value
    key, value = item
    return key, value


def build(source: str | Path | None = None, overrides: Iterable = (), *, checkpoint: dict | None = None,
          filesystem: bool = True) -> Config:
    """The config of a command:

    1. source: None = the default preset (glyphs_cpu), a preset name, or a file (layered on Config() defaults);
    2. checkpoint (optional, `slade evaluate`): its saved config, with the PATH_FIELDS kept from step 1;
    3. overrides: (dotted key, raw string) pairs, or 'key=value' strings, applied in order;
    4. validate (values, cross-field rules and, with filesystem=True, runtime.out_dir and model.weights).

    Raises ConfigError (FileNotFoundError for a missing file) before any data is read."""
    cfg = read_preset(DEFAULT_PRESET if source is None else source)
    if checkpoint is not None:
        cfg = from_checkpoint(checkpoint, cfg)
    for item in overrides:
        key, raw = _pair(item)
        override(cfg, key, raw)
    return validate(cfg, filesystem=filesystem)
