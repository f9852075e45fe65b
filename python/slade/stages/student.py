"""Stage 4 of SLADE (METHOD.md): the student, trained on joint batches of labeled images (m-per-class on labels) and
unlabeled images (m-per-class on pseudo labels) with the objective of student_objective.py. The first
student.warmup_steps steps train the basis W alone on detached embeddings. Validation MAP@R picks the best epoch,
as for the teacher; the test uses the embedding alone (W is dropped).

Stage directory: last.pt (every student.checkpoint_every steps and every epoch: a resumed run continues from the
step it stopped at and ends as an uninterrupted one would, exactly so with data.workers=0), best.pt (weights, like
the teacher's: `slade evaluate` reads it), metrics.jsonl (epochs), steps.jsonl (per step: losses, mu+/mu-/v+/v-,
the number of unlabeled pairs and, where the benchmark knows the true classes, their precision: logged only),
curves.png and the test files of teacher.finish."""
from __future__ import annotations

import dataclasses
import random
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from slade import config
from slade.runtime import checkpoint
from slade.data.benchmark import Benchmark
from slade.data.samplers import JointBatchSampler, MPerClassBatchSampler
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.data.transforms import TrainTransform
from slade.runtime.devices import autocast
from slade.runtime.metrics_log import MetricsLog
from slade.models import build_model
from slade.training.registry import build_loss, build_miner
from slade.training.optim import build_optimizer, build_scheduler
from slade.evaluation.plots import plot_training_curves
from slade.stages.pseudo_labels import PseudoLabels
from slade.evaluation.retrieval import evaluate_role
from slade.runtime.seeding import seed_everything
from slade.stages.student_objective import StudentObjective, build_basis
from slade.stages.teacher import eval_transform, finish

CHECKPOINT_FORMAT = 1


def joint_sampler(cfg: config.Config, labeled_labels, pseudo_labels, offset: int) -> JointBatchSampler:
    s = cfg.student
    labeled = MPerClassBatchSampler(labeled_labels, cfg.train.m_per_class, s.labeled_batch, seed=cfg.train.seed,
                                    visits_per_class=cfg.train.visits_per_class)
    unlabeled = MPerClassBatchSampler(pseudo_labels, s.unlabeled_m, s.unlabeled_batch, seed=cfg.train.seed + 1)
    return JointBatchSampler(labeled, unlabeled, offset)


class _Parts:
    """The trainable state of a student run, so that checkpoints save and restore it in one place."""

    def __init__(self, cfg: config.Config, bench: Benchmark, device, amp: bool):
        s = cfg.student
        self.model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
        self.basis = build_basis(s, len(bench.labeled.class_names), cfg.model.embedding_dim)
        groups = [{"params": list(self.model.parameters())}]
        if self.basis is not None:
            self.basis.to(device)
            groups.append({"params": list(self.basis.parameters()), "lr": s.basis_lr or s.lr or cfg.train.lr})
        schedule = dataclasses.replace(cfg.train, epochs=s.epochs, lr=s.lr or cfg.train.lr)
        self.optimizer = build_optimizer(groups, schedule)
        self.scheduler = build_scheduler(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "basis": None if self.basis is None else self.basis.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load(self, state: dict) -> None:
        checkpoint.restore(state, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                           scaler=self.scaler, **({} if self.basis is None else {"basis": self.basis}))

    def train(self) -> None:
        self.model.train()
        if self.basis is not None:
            self.basis.train()


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def _pair_precision(pairs, hidden: torch.Tensor) -> dict:
    """Share of the unlabeled positive (negative) pairs whose hidden true classes agree (differ): logged only."""
    a1, p, a2, n = (t.cpu() for t in pairs)
    out = {}
    if len(a1):
        out["pos_precision"] = float((hidden[a1] == hidden[p]).float().mean())
    if len(a2):
        out["neg_precision"] = float((hidden[a2] != hidden[n]).float().mean())
    return out


def _step(parts: _Parts, objective: StudentObjective, batch, pseudo: torch.Tensor, hidden: torch.Tensor | None,
          device, amp: bool, warmup: bool) -> dict:
    labels = batch["labels"].to(device)
    is_unlabeled = (labels < 0).cpu()  # labeled items carry their class, unlabeled ones -1: look up their pseudo label
    unlabeled_idx = batch["indices"][is_unlabeled]
    p_u = pseudo[unlabeled_idx].to(device)
    images = batch["images"].to(device)
    with torch.set_grad_enabled(not warmup), autocast(device, amp):
        f = parts.model(images)
    f_l, y_l, f_u = f[~is_unlabeled], labels[~is_unlabeled], f[is_unlabeled]
    loss, stats, pairs = (objective.warmup if warmup else objective)(f_l, y_l, f_u, p_u)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if pairs is not None and hidden is not None:
        stats.update(_pair_precision(pairs, hidden[unlabeled_idx]))
    return {"loss": loss.item(), "warmup": warmup, **stats}


def train_student(cfg: config.Config, bench: Benchmark, pseudo: PseudoLabels, init_state: dict | None, out: Path,
                  device, resume: bool = False, progress: bool = True, on_step_end=()) -> dict:
    """Trains (or with resume=True continues from out/last.pt). init_state: model weights to start from.
    on_step_end: callables (global_step, row) run after each step (and its checkpoint, if one was due).
    Returns {'best_epoch', 'best_val_map_at_r', 'test': metrics}."""
    s = cfg.student
    out.mkdir(parents=True, exist_ok=True)
    if s.epochs < 1:
        raise ValueError(f"student.epochs must be >= 1, got {s.epochs}")
    amp = cfg.train.amp and device.type == "cuda"
    val_role = "val" if bench.val is not None else "test"
    if bench.val is None:
        warnings.warn("no validation classes: the student's best epoch is chosen on the test set")

    seed_everything(cfg.train.seed)
    parts = _Parts(cfg, bench, device, amp)
    if init_state is not None:
        parts.model.load_state_dict(init_state)
    objective = StudentObjective(s, build_loss(cfg.loss), build_miner(cfg.loss), parts.basis)
    unlabeled = bench.unlabeled.subset(pseudo.indices)  # readable images only, aligned with pseudo.labels
    # As the teacher: crops and flips for photos only (they would change a glyph's class).
    train_tf = (TrainTransform(cfg.data.image_size, cfg.data.channels) if bench.photo
                else eval_transform(cfg, photo=False))
    dataset = ConcatDataset([ImageDataset(bench.labeled, train_tf), ImageDataset(unlabeled, train_tf)])
    sampler = joint_sampler(cfg, bench.labeled.labels, pseudo.labels, offset=len(bench.labeled))
    pseudo_t = torch.from_numpy(pseudo.labels)
    hidden = None if unlabeled.hidden_labels is None else torch.from_numpy(unlabeled.hidden_labels)

    progress_state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "best": None, "steps": []}
    last_path = out / "last.pt"
    rng = None
    if resume and last_path.is_file():
        saved = checkpoint.load(last_path)
        parts.load(saved)
        progress_state = {k: saved[k] for k in progress_state}
        rng = saved["rng"]
    elif resume:
        warnings.warn(f"resume: no {last_path} yet, starting the student from scratch")
    history, steps = progress_state["history"], progress_state["steps"]
    epoch_log, step_log = MetricsLog(out / "metrics.jsonl"), MetricsLog(out / "steps.jsonl")
    epoch_log.restart(history)
    step_log.restart(steps)

    def save(epoch: int, step_in_epoch: int) -> None:
        checkpoint.save_atomic({"format": CHECKPOINT_FORMAT, **parts.state(), "epoch": epoch,
                                "step_in_epoch": step_in_epoch, "global_step": progress_state["global_step"],
                                "history": history, "best": progress_state["best"], "steps": steps,
                                "rng": _rng_state(), "config": config.to_dict(cfg)}, last_path)

    skip_log = SkipLog()
    for epoch in range(progress_state["epoch"], s.epochs):
        began = time.time()
        skip = progress_state["step_in_epoch"]
        if rng is not None and skip:
            _set_rng_state(rng)  # continue the interrupted epoch's random streams where they were
        else:
            seed_everything(cfg.train.seed, epoch + 1)  # each epoch's randomness depends only on (seed, epoch)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        loader = DataLoader(dataset, batch_sampler=batches[skip:], num_workers=cfg.data.workers,
                            collate_fn=collate_skipping_unreadable, generator=torch.Generator())
        parts.train()
        bar = tqdm(loader, desc=f"student epoch {epoch + 1}", leave=False, disable=not progress,
                   initial=skip, total=len(batches))
        for i, batch in enumerate(bar, start=skip):
            skip_log.add("student", batch["skipped"])
            warmup = parts.basis is not None and progress_state["global_step"] < s.warmup_steps
            if parts.basis is not None and s.restart_averages and 0 < s.warmup_steps == progress_state["global_step"]:
                parts.basis.restart_averages()  # the warm-up's averages lag behind the W it ended with
            row = {"step": progress_state["global_step"] + 1, "epoch": epoch + 1,
                   **_step(parts, objective, batch, pseudo_t, hidden, device, amp, warmup)}
            progress_state["global_step"] += 1
            steps.append(row)
            step_log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if s.checkpoint_every and row["step"] % s.checkpoint_every == 0 and i + 1 < len(batches):
                save(epoch, i + 1)
            for hook in on_step_end:
                hook(row["step"], row)
        progress_state["step_in_epoch"] = 0
        parts.scheduler.step()
        val = evaluate_role(parts.model, bench, val_role, eval_transform(cfg, bench.photo), device, cfg.eval,
                            amp=amp, skip_log=skip_log, progress=progress).metrics
        trained = [r for r in steps if r["epoch"] == epoch + 1 and not r["warmup"]]
        row = {"epoch": epoch + 1, "loss": sum(r["loss"] for r in trained) / max(1, len(trained)),
               "lr": parts.optimizer.param_groups[0]["lr"], "val": val, "seconds": round(time.time() - began, 2)}
        history.append(row)
        best = progress_state["best"]
        if best is None or val["map_at_r"] > best["map_at_r"]:
            progress_state["best"] = {"epoch": epoch + 1, "map_at_r": val["map_at_r"]}
            checkpoint.save_atomic({"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                    "model": parts.model.state_dict(), "config": config.to_dict(cfg), "val": val},
                                   out / "best.pt")
        progress_state["epoch"] = epoch + 1
        save(epoch + 1, 0)
        epoch_log.append(row)
        plot_training_curves(history, out / "curves.png")
        if progress:
            tqdm.write(f"student epoch {epoch + 1}/{s.epochs}  loss {row['loss']:.4f}  val MAP@R "
                       f"{val['map_at_r']:.4f}  P@1 {val['precision_at_1']:.4f}  ({row['seconds']} s)")

    best = progress_state["best"]
    parts.model.load_state_dict(checkpoint.load(out / "best.pt")["model"])
    test = finish(parts.model, bench, cfg, device, amp, out, skip_log, progress)
    epoch_log.append({"event": "test", "best_epoch": best["epoch"], "test": test})
    skip_log.report(bench.sets())
    return {"best_epoch": best["epoch"], "best_val_map_at_r": best["map_at_r"], "test": test}
