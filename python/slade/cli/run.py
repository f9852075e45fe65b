"""`slade run`: the whole SLADE pipeline (self-supervised init -> teacher -> pseudo labels -> student, R rounds),
then report.md / report.json and plots in runtime.out_dir. Without --config: the glyphs_cpu preset, the glyph
benchmark sized for a 2-core CPU."""
from __future__ import annotations

import json

from slade.cli.config_args import add_training_arguments, config_from_args, context_from_args

NAME = "run"
HELP = ("run the SLADE pipeline (self-supervised init, teacher, pseudo labels, student) and write its report; "
        "default: the glyph benchmark sized for a 2-core CPU")


def add_arguments(parser) -> None:
    add_training_arguments(parser)


def run(args, extra) -> int:
    cfg = config_from_args(args, extra)
    from slade.pipeline.selftrain import run_selftrain  # heavy imports only once the config is known to be good

    ctx = context_from_args(cfg, args)
    report = run_selftrain(cfg, ctx)
    if ctx.ranks.main:  # one report per job, not one per rank
        print(json.dumps({"out_dir": cfg.runtime.out_dir, "test": report["test"], "seconds": report["seconds"]},
                         indent=2))
    return 0
