"""The SLADE pipeline (METHOD.md): self-supervised init -> teacher -> pseudo labels -> student, for R rounds (the
student becomes the teacher and the unlabeled set is re-clustered), in one model (folds=1) or the paper's 4-fold
protocol with concatenated test embeddings. Ends with report.md / report.json and plots in out_dir.

Every stage writes its result into its own directory and a finished stage is not redone with resume=True; the
self-supervised, teacher and student stages also resume from their own last.pt, so an interrupted run continues
where it stopped. Layout: init/, [foldN/]teacher/, [foldN/]roundR/pseudo/, [foldN/]roundR/student/."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from tqdm import tqdm

from slade import config
from slade.runtime import checkpoint
from slade.stages import pseudo_labels
from slade.data.benchmark import build_benchmark
from slade.data.benchmark import Benchmark
from slade.runtime.devices import resolve_device
from slade.data.folds import fold_benchmarks
from slade.evaluation.concatenated import concatenated_test_metrics
from slade.models import build_model
from slade.stages.selfsup import train_selfsup
from slade.pipeline.report import write_report
from slade.stages.student import train_student
from slade.stages.teacher import eval_transform, train_teacher

STUDENT_INITS = ("selfsup", "teacher")


def _finished(path: Path, resume: bool) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if resume and path.is_file() else None


def _record(path: Path, result: dict, began: float) -> dict:
    result = {**result, "seconds": round(time.time() - began, 1)}
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def selfsup_stage(cfg: config.Config, bench: Benchmark, out: Path, device, resume: bool, progress: bool):
    """The init weights (None when selfsup.enabled is false)."""
    if not cfg.selfsup.enabled:
        return None
    if _finished(out / "result.json", resume) is None:
        began = time.time()
        train_selfsup(cfg, bench, out, device, resume=resume, progress=progress)
        history = checkpoint.load(out / "init.pt")["history"]
        _record(out / "result.json", {"epochs": len(history), "final_loss": history[-1]["loss"]}, began)
    return checkpoint.load(out / "init.pt")["model"]


def teacher_stage(cfg: config.Config, bench: Benchmark, init, out: Path, resume: bool, progress: bool):
    """(result, best weights) of issue 4's supervised training, started from the init weights."""
    result = _finished(out / "result.json", resume)
    if result is None:
        began = time.time()
        teacher_cfg = dataclasses.replace(cfg, out_dir=str(out))
        result = _record(out / "result.json", train_teacher(teacher_cfg, resume=resume, progress=progress,
                                                            init_state=init, bench=bench), began)
    return result, checkpoint.load(out / "best.pt")["model"]


def pseudo_stage(cfg: config.Config, bench: Benchmark, teacher_state: dict, out: Path, device, resume: bool,
                 progress: bool) -> pseudo_labels.PseudoLabels:
    if resume and (out / "pseudo_labels.pt").is_file():
        return pseudo_labels.load(out)
    began = time.time()
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    model.load_state_dict(teacher_state)
    amp = cfg.train.amp and device.type == "cuda"
    pseudo = pseudo_labels.make_pseudo_labels(model, bench.unlabeled, eval_transform(cfg, bench.photo), device,
                                              cfg.pseudo, cfg.eval, seed=cfg.train.seed, amp=amp, progress=progress)
    pseudo.quality["seconds"] = round(time.time() - began, 1)
    pseudo_labels.save(pseudo, out)
    return pseudo


def student_stage(cfg: config.Config, bench: Benchmark, pseudo, init, out: Path, device, resume: bool,
                  progress: bool, on_step_end=()):
    """(result, best weights) of the student."""
    result = _finished(out / "result.json", resume)
    if result is None:
        began = time.time()
        result = _record(out / "result.json", train_student(cfg, bench, pseudo, init, out, device, resume=resume,
                                                            progress=progress, on_step_end=on_step_end), began)
    return result, checkpoint.load(out / "best.pt")["model"]


def _check(cfg: config.Config) -> None:
    if cfg.selftrain.rounds < 1:
        raise ValueError(f"selftrain.rounds must be >= 1, got {cfg.selftrain.rounds}")
    if cfg.student.init not in STUDENT_INITS:
        raise ValueError(f"student.init must be one of {STUDENT_INITS}, got {cfg.student.init!r}")
    per_batch = cfg.student.unlabeled_batch // max(1, cfg.student.unlabeled_m)
    if per_batch > cfg.pseudo.k:
        raise ValueError(f"student.unlabeled_batch / student.unlabeled_m = {per_batch} clusters per batch, more than "
                         f"pseudo.k={cfg.pseudo.k}")


def run_selftrain(cfg: config.Config, resume: bool = False, progress: bool = True, on_step_end=()) -> dict:
    """Runs (or with resume=True continues) the whole pipeline into cfg.out_dir; returns the report dict.
    on_step_end: callables (global_step, row) after each student step (tests interrupt runs with it)."""
    _check(cfg)
    began = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save(cfg, out / "config.yaml")
    device = resolve_device(cfg.train.device)
    bench = build_benchmark(cfg.data)
    if bench.unlabeled is None:
        raise ValueError(f"benchmark {bench.name!r} has no unlabeled set: give data.unlabeled_root")
    pseudo_labels.check_cluster_count(cfg.pseudo.k, len(bench.unlabeled))  # before minutes of training

    init = selfsup_stage(cfg, bench, out / "init", device, resume, progress)
    folds = fold_benchmarks(bench, cfg.selftrain.folds, cfg.data.seed)
    runs = []
    for i, fold in enumerate(folds):
        fold_dir = out if len(folds) == 1 else out / f"fold{i + 1}"
        if progress and len(folds) > 1:
            tqdm.write(f"fold {i + 1}/{len(folds)}")
        teacher, teacher_state = teacher_stage(cfg, fold, init, fold_dir / "teacher", resume, progress)
        run = {"teacher": teacher, "teacher_state": teacher_state, "rounds": []}
        for r in range(1, cfg.selftrain.rounds + 1):
            round_dir = fold_dir / f"round{r}"
            pseudo = pseudo_stage(cfg, fold, teacher_state, round_dir / "pseudo", device, resume, progress)
            student_init = init if cfg.student.init == "selfsup" else teacher_state
            student, teacher_state = student_stage(cfg, fold, pseudo, student_init, round_dir / "student", device,
                                                   resume, progress, on_step_end)
            run["rounds"].append({"round": r, "pseudo": pseudo.quality, "student": student,
                                  "student_state": teacher_state, "dir": str(round_dir)})
        runs.append(run)

    concatenated = None
    if len(folds) > 1:
        amp = cfg.train.amp and device.type == "cuda"
        transform = eval_transform(cfg, bench.photo)
        concatenated = {"teacher": concatenated_test_metrics([r["teacher_state"] for r in runs], cfg, bench,
                                                             transform, device, amp, progress)}
        for r in range(cfg.selftrain.rounds):
            concatenated[f"student_round{r + 1}"] = concatenated_test_metrics(
                [run["rounds"][r]["student_state"] for run in runs], cfg, bench, transform, device, amp, progress)
    return write_report(out, cfg, bench, runs, concatenated, seconds=round(time.time() - began, 1))
