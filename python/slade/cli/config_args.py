"""Config options shared by subcommands: --config FILE, --set KEY=VALUE (repeatable) and dotted flags
(--train.lr 1e-3, --train.lr=1e-3, --out-dir DIR)."""
from __future__ import annotations

import argparse

from slade import config


def add_config_arguments(parser: argparse.ArgumentParser, with_file: bool = True) -> None:
    if with_file:
        parser.add_argument("--config", help="YAML or JSON config file (defaults are used for missing fields)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.lr=1e-3 (repeatable); "
                             "--train.lr 1e-3 works too")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")


def _pairs_from_flags(extra: list[str]) -> list[tuple[str, str]]:
    pairs, i = [], 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise config.ConfigError(f"unexpected argument {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise config.ConfigError(f"{token} needs a value")
            value, i = extra[i + 1], i + 1
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def apply_overrides(cfg: config.Config, sets: list[str], extra: list[str]) -> config.Config:
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise config.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        config.override(cfg, key.strip(), value)
    for key, value in _pairs_from_flags(extra):
        config.override(cfg, key, value)
    return cfg
