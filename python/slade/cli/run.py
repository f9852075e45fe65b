"""`slade run`: the whole SLADE pipeline (self-supervised init -> teacher -> pseudo labels -> student, R rounds),
then report.md / report.json and plots in runtime.out_dir. Without --config: the glyphs_cpu preset, the glyph
benchmark sized for a 2-core CPU."""
from __future__ import annotations

import json

from slade.cli.config_args import add_config_arguments, config_from_args

NAME = "run"
HELP = ("run the SLADE pipeline (self-supervised init, teacher, pseudo labels, student) and write its report; "
        "default: the glyph benchmark sized for a 2-core CPU")


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in runtime.out_dir where it stopped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args, extra) -> int:
    cfg = config_from_args(args, extra)
    from slade.pipeline.selftrain import run_selftrain  # heavy imports only once the config is known to be good
    from slade.runtime.context import RunContext

    report = run_selftrain(cfg, RunContext.from_config(cfg, progress=not args.no_progress, resume=args.resume))
    print(json.dumps({"out_dir": cfg.runtime.out_dir, "test": report["test"], "seconds": report["seconds"]},
                     indent=2))
    return 0
