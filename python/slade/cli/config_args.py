"""Config options shared by subcommands: --config FILE (or a preset name), --set KEY=VALUE (repeatable) and dotted
flags (--train.lr 1e-3, --train.lr=1e-3, --runtime.out_dir DIR). The config is complete and checked before any data
is read."""
from __future__ import annotations

import argparse

from slade import config


def add_config_arguments(parser: argparse.ArgumentParser, with_file: bool = True) -> None:
    if with_file:
        parser.add_argument("--config", help="YAML or JSON config file, or a preset name (default: the glyphs_cpu "
                                             "preset); its missing fields take the defaults")
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


def override_pairs(sets: list[str], extra: list[str]) -> list[tuple[str, str]]:
    """(dotted key, raw value) of every --set and dotted flag, in command-line order (--set first)."""
    pairs = []
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise config.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value))
    return pairs + _pairs_from_flags(extra)


def config_from_args(args, extra: list[str]) -> config.Config:
    """The preset or --config file, with the command line's overrides, validated."""
    return config.build(getattr(args, "config", None), override_pairs(args.set, extra))


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """What every training command takes: the config options, --resume and --no-progress."""
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in runtime.out_dir where it stopped (finished stages are kept)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def context_from_args(cfg: config.Config, args):
    """The run context of a training command."""
    from slade.runtime.context import RunContext

    return RunContext.from_config(cfg, progress=not args.no_progress, resume=args.resume)
