"""The `slade` command line. Each subcommand lives in slade/cli/<name>.py and provides NAME, HELP,
add_arguments(parser) and run(args, extra) -> exit code; adding one is one line in COMMANDS."""
from __future__ import annotations

import argparse
import os
import sys

from slade.cli import evaluate, info, run, train_teacher

COMMANDS = (run, train_teacher, evaluate, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slade", description="SLADE metric learning: data, training, evaluation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP, description=command.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Unknown `--section.field value` flags are config overrides; the subcommand decides whether it takes them.
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        return command.run(args, extra)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        if getattr(args, "traceback", False):
            raise
        print(f"slade {args.command}{_rank_suffix()}: error: {err}", file=sys.stderr)
        return 2  # under torchrun a failing rank's exit stops the other ranks


def _rank_suffix() -> str:
    """' (rank R of K)' inside a torchrun job, so that an error names the rank it came from."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" (rank {os.environ.get('RANK', '?')} of {world})" if world > 1 else ""
