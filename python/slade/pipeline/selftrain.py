"""The SLADE pipeline (docs/method.md): self-supervised init -> teacher -> pseudo labels -> student, for R rounds (the
student becomes the teacher and the unlabeled set is re-clustered), in one model (folds=1) or the paper's 4-fold
protocol with concatenated test embeddings. Ends with report.md / report.json and plots in the run directory.

Every stage writes its typed result to <stage dir>/result.json; with --resume a stage whose result exists is not run
again, and the training stages resume from their own last.pt, so an interrupted run continues where it stopped.
Layout (runtime.context.RunPaths): init/, [foldN/]teacher/, [foldN/]roundR/pseudo/, [foldN/]roundR/student/."""
from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from slade import config
from slade.data.benchmark import Benchmark, build_benchmark
from slade.data.folds import fold_benchmarks
from slade.evaluation.concatenated import concatenated_test_metrics
from slade.pipeline.report import write_report
from slade.runtime.context import RunContext
from slade.runtime.stage_result import StageResult, finished
from slade.data.pseudo_labels import load_pseudo_labels
from slade.stages.pseudo_labels import check_cluster_count, pseudo_label
from slade.stages.selfsup import train_selfsup
from slade.stages.student import train_student
from slade.stages.teacher import train_teacher


@dataclass
class RoundResult:
    round: int
    pseudo: StageResult  # metrics: the pseudo labels' quality
    student: StageResult


@dataclass
class FoldResult:
    teacher: StageResult
    rounds: list[RoundResult]


def selfsup_stage(cfg: config.Config, bench: Benchmark, ctx: RunContext) -> StageResult | None:
    """None when selfsup.enabled is false (teacher and student start from the model's own initialisation)."""
    if not cfg.selfsup.enabled:
        return None
    out = ctx.paths.init
    return finished(out, "selfsup", ctx.resume) or train_selfsup(cfg, bench, ctx, out)


def teacher_stage(cfg: config.Config, bench: Benchmark, init: StageResult | None, ctx: RunContext) -> StageResult:
    out = ctx.paths.teacher
    return finished(out, "teacher", ctx.resume) or train_teacher(cfg, bench, ctx, out,
                                                                  None if init is None else init.weights)


def pseudo_stage(cfg: config.Config, bench: Benchmark, teacher: StageResult, ctx: RunContext, round_: int):
    """(the stage's result, the pseudo labels)."""
    out = ctx.paths.pseudo(round_)
    result = finished(out, "pseudo_labels", ctx.resume) or pseudo_label(cfg, bench, ctx, out, teacher.weights)
    return result, load_pseudo_labels(out)


def student_stage(cfg: config.Config, bench: Benchmark, pseudo, init: StageResult | None, ctx: RunContext,
                  round_: int, on_step_end=()) -> StageResult:
    out = ctx.paths.student(round_)
    return finished(out, "student", ctx.resume) or train_student(
        cfg, bench, pseudo, ctx, out, None if init is None else init.weights, on_step_end=on_step_end)


def run_fold(cfg: config.Config, bench: Benchmark, init: StageResult | None, ctx: RunContext,
             on_step_end=()) -> FoldResult:
    """Teacher, then R rounds of pseudo labels and student; each round's student is the next round's teacher."""
    teacher = teacher_stage(cfg, bench, init, ctx)
    fold, current_teacher = FoldResult(teacher, []), teacher
    for r in range(1, cfg.selftrain.rounds + 1):
        pseudo_result, pseudo = pseudo_stage(cfg, bench, current_teacher, ctx, r)
        student_init = init if cfg.student.init == "selfsup" else current_teacher
        student = student_stage(cfg, bench, pseudo, student_init, ctx, r, on_step_end)
        fold.rounds.append(RoundResult(r, pseudo_result, student))
        current_teacher = student
    return fold


def run_selftrain(cfg: config.Config, ctx: RunContext, on_step_end=()) -> dict:
    """Runs (or with ctx.resume continues) the whole pipeline into ctx.paths.root; returns the report dict.
    on_step_end: callables (global_step, row) after each student step (tests interrupt runs with it)."""
    began = time.time()
    root = ctx.paths.root
    root.mkdir(parents=True, exist_ok=True)
    if ctx.ranks.main:
        config.save(cfg, root / "config.yaml")
    bench = build_benchmark(cfg.data)
    if bench.unlabeled is None:
        raise ValueError(f"benchmark {bench.name!r} has no unlabeled set: give data.unlabeled_root")
    check_cluster_count(cfg.pseudo.k, len(bench.unlabeled))  # before minutes of training

    init = selfsup_stage(cfg, bench, ctx)
    folds = fold_benchmarks(bench, cfg.selftrain.folds, cfg.data.seed)
    results = []
    for i, fold_bench in enumerate(folds, start=1):
        if ctx.progress and len(folds) > 1:
            tqdm.write(f"fold {i}/{len(folds)}")
        fold_ctx = ctx.at(ctx.paths.fold(i, len(folds)).root)
        results.append(run_fold(cfg, fold_bench, init, fold_ctx, on_step_end))

    concatenated = None
    if len(folds) > 1:
        concatenated = {"teacher": concatenated_test_metrics([f.teacher.weights for f in results], cfg, bench, ctx)}
        for r in range(cfg.selftrain.rounds):
            concatenated[f"student_round{r + 1}"] = concatenated_test_metrics(
                [f.rounds[r].student.weights for f in results], cfg, bench, ctx)
    report = write_report(root, cfg, bench, results, concatenated, init, seconds=round(time.time() - began, 1),
                          write=ctx.ranks.main)
    ctx.ranks.barrier()
    return report
