"""`slade train-teacher`: supervised training of backbone + embedding head on the labeled set (no self-supervised
init), into runtime.out_dir. Without --config: the glyphs_cpu preset, as `slade run`."""
from __future__ import annotations

import json

from slade.cli.config_args import add_training_arguments, config_from_args, context_from_args

NAME = "train-teacher"
HELP = "train the teacher (backbone + embedding head) on the labeled classes"


def add_arguments(parser) -> None:
    add_training_arguments(parser)


def run(args, extra) -> int:
    cfg = config_from_args(args, extra)
    from slade.data.benchmark import build_benchmark  # heavy imports only once the config is known to be good
    from slade.stages.teacher import train_teacher

    ctx = context_from_args(cfg, args)
    result = train_teacher(cfg, build_benchmark(cfg.data), ctx, ctx.paths.root)
    if ctx.ranks.main:  # one report per job, not one per rank
        print(json.dumps({"out_dir": cfg.runtime.out_dir, "best_epoch": result.best_epoch,
                          "best_val_map_at_r": result.best_val_map_at_r, "test": result.metrics}, indent=2))
    return 0
