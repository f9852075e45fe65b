"""`slade run`: the whole SLADE pipeline (self-supervised init -> teacher -> pseudo labels -> student, R rounds),
then report.md / report.json and plots in out_dir. Without --config: the glyph benchmark sized for a 2-core CPU."""
from __future__ import annotations

import json

from slade import config
from slade.cli.config_args import add_config_arguments, apply_overrides

NAME = "run"
HELP = ("run the SLADE pipeline (self-supervised init, teacher, pseudo labels, student) and write its report; "
        "default: the glyph benchmark sized for a 2-core CPU")


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in out_dir where it stopped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args, extra) -> int:
    from slade.config.presets import glyphs_cpu

    cfg = glyphs_cpu() if args.config is None else config.load(args.config)
    cfg = apply_overrides(cfg, args.set, extra)
    from slade.pipeline.selftrain import run_selftrain  # heavy imports only once the arguments are known to be good

    report = run_selftrain(cfg, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({"out_dir": cfg.out_dir, "test": report["test"], "seconds": report["seconds"]}, indent=2))
    return 0
