"""`slade evaluate --checkpoint PATH`: test metrics, Recall@K plot and retrieval grid of a saved model."""
from __future__ import annotations

import json
from pathlib import Path

from slade import config
from slade.runtime import checkpoint
from slade.cli.config_args import add_config_arguments, apply_overrides

NAME = "evaluate"
HELP = "evaluate a checkpoint on its benchmark's test set (MAP@R, R-Precision, P@1, Recall@K, NMI/AMI)"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--out-dir", help="where to write the results (default: <checkpoint dir>/eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(parser, with_file=False)


def run(args, extra) -> int:
    state = checkpoint.load(args.checkpoint)
    # The run's own config, with overrides for what may differ here (data.root, device, eval settings).
    cfg = apply_overrides(config.from_dict(config.Config, state["config"]), args.set, extra)
    out = Path(args.out_dir) if args.out_dir else Path(args.checkpoint).resolve().parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    config.save(cfg, out / "config.yaml")

    from slade.data.benchmark import build_benchmark
    from slade.data.torch_dataset import SkipLog
    from slade.runtime.devices import resolve_device
    from slade.models import build_model
    from slade.stages.teacher import finish

    device = resolve_device(cfg.train.device)
    bench = build_benchmark(cfg.data)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    model.load_state_dict(state["model"])
    skip_log = SkipLog()
    metrics = finish(model, bench, cfg, device, cfg.train.amp and device.type == "cuda", out, skip_log,
                     progress=not args.no_progress)
    skip_log.report(bench.sets())
    print(json.dumps({"checkpoint": str(args.checkpoint), "epoch": state.get("epoch"), "test": metrics}, indent=2))
    return 0
