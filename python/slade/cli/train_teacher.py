"""`slade train-teacher`: supervised training of backbone + embedding head on the labeled set."""
from __future__ import annotations

import json

from slade import config
from slade.cli.config_args import add_config_arguments, apply_overrides

NAME = "train-teacher"
HELP = "train the teacher (backbone + embedding head) on the labeled classes"


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args, extra) -> int:
    cfg = apply_overrides(config.load(args.config), args.set, extra)
    from slade.stages.teacher import train_teacher  # heavy imports only once the arguments are known to be good

    result = train_teacher(cfg, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0
