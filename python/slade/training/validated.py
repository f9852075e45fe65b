"""The training of a stage that validates and tests (teacher, student): the one loop with validation MAP@R choosing
best.pt, then the test of the best epoch, its files, and the stage's result."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from slade import config
from slade.data.benchmark import Benchmark
from slade.evaluation.retrieval import evaluate_role, test_and_report, validation_role
from slade.runtime.context import RunContext
from slade.runtime.seeding import seed_everything
from slade.runtime.stage_result import StageResult
from slade.training.loop import Loop, Task


def train_validate_test(make_task: Callable[[], Task], cfg: config.Config, bench: Benchmark, ctx: RunContext,
                        out: Path, epochs: int, checkpoint_every: int = 0, on_step_end=(),
                        on_epoch_end=()) -> StageResult:
    """Builds the task once the generators are seeded, trains it (resuming with ctx.resume), tests its best epoch
    into `out` (with the run's config.yaml) and saves the result: the test metrics, and best.pt's weights."""
    began = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ctx.ranks.main:
        config.save(cfg, out / "config.yaml")
    seed_everything(ctx.seed)
    task = make_task()
    role = validation_role(bench, task.name)
    loop = Loop(task, ctx, out, epochs, config.to_dict(cfg), checkpoint_every=checkpoint_every,
                on_step_end=on_step_end, on_epoch_end=on_epoch_end,
                validate=lambda model, skip_log: evaluate_role(model, bench, role, cfg, ctx, skip_log).metrics)
    trained = loop.run()
    loop.load_best()
    test = test_and_report(task.model, bench, cfg, ctx, out, loop.skip_log)
    if ctx.ranks.main:
        loop.epoch_log.append({"event": "test", "best_epoch": trained.best["epoch"], "test": test,
                               "skipped": loop.skip_log.paths()})
        loop.skip_log.report(task.name)
    return StageResult(task.name, out, round(time.time() - began, 1), metrics=test,
                       best_epoch=trained.best["epoch"], best_val_map_at_r=trained.best["map_at_r"],
                       history=trained.history, steps=trained.steps, skipped=loop.skip_log.paths(),
                       weights_file="best.pt", weights=task.model.state_dict()).save(ctx.ranks)
