"""`slade evaluate --checkpoint PATH`: test metrics, Recall@K plot and retrieval grid of a saved model. The model
settings come from the config saved in the checkpoint; every path (data, fonts, cache, weights, output) comes from
this command line or --config, never from the checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from slade import config
from slade.cli.config_args import add_config_arguments, override_pairs

NAME = "evaluate"
HELP = "evaluate a checkpoint on its benchmark's test set (MAP@R, R-Precision, P@1, Recall@K, NMI/AMI)"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--out-dir", help="where to write the results (default: <checkpoint dir>/eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(parser)


def run(args, extra) -> int:
    from slade.runtime import checkpoint

    state = checkpoint.load(args.checkpoint, "model checkpoint", keys=("format", "model", "config", "epoch"))
    cfg = config.build(args.config, override_pairs(args.set, extra), checkpoint=state["config"])
    out = Path(args.out_dir) if args.out_dir else Path(args.checkpoint).resolve().parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    config.save(cfg, out / "config.yaml")

    from slade.data.benchmark import build_benchmark
    from slade.data.torch_dataset import SkipLog
    from slade.evaluation.retrieval import test_and_report
    from slade.models import build_model
    from slade.runtime.context import RunContext

    ctx = RunContext.from_config(cfg, progress=not args.no_progress).at(out)
    bench = build_benchmark(cfg.data)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(ctx.device)
    checkpoint.restore(state, Path(args.checkpoint), model=model)
    skip_log = SkipLog()
    metrics = test_and_report(model, bench, cfg, ctx, out, skip_log)
    if ctx.ranks.main:  # one report per job, not one per rank
        skip_log.report("evaluate")
        print(json.dumps({"checkpoint": str(args.checkpoint), "epoch": state["epoch"], "test": metrics,
                          "skipped": skip_log.paths()}, indent=2))
    return 0
