"""Stage 4 of SLADE (docs/method.md): the student, trained through the one training loop on joint batches of
labeled images (m-per-class on labels) and unlabeled images (m-per-class on pseudo labels) with the objective of
student_objective.py. A warm-up trains the basis W alone on detached embeddings: student.warmup_steps steps, or
with student.warmup_ce_ratio until L_CE / log K has dropped that far (warmup_steps is then the cap), and never more
than student.warmup_max_fraction of the student's steps.
Validation MAP@R picks the best epoch, as for the teacher; the test uses the embedding alone (W is dropped).

Stage directory: as the teacher's. steps.jsonl holds per step the losses, mu+/mu-/v+/v-, the number of unlabeled
pairs and, where the benchmark knows the true classes, their precision (logged only, never trained on)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset

from slade import config
from slade.data.benchmark import Benchmark
from slade.data.pseudo_labels import PseudoLabels
from slade.data.samplers import JointBatchSampler, MPerClassBatchSampler
from slade.data.torch_dataset import ImageDataset
from slade.data.transforms import train_transform
from slade.models import build_model
from slade.runtime.context import RunContext
from slade.runtime.stage_result import StageResult
from slade.stages.student_objective import StudentObjective, build_basis
from slade.training.optim import build_optimizer, build_scheduler
from slade.training.registry import build_loss, build_miner
from slade.training.validated import train_validate_test


def joint_sampler(cfg: config.Config, seed: int, labeled_labels, pseudo_labels, offset: int) -> JointBatchSampler:
    s = cfg.student
    labeled = MPerClassBatchSampler(labeled_labels, cfg.train.m_per_class, s.labeled_batch, seed=seed,
                                    visits_per_class=cfg.train.visits_per_class)
    unlabeled = MPerClassBatchSampler(pseudo_labels, s.unlabeled_m, s.unlabeled_batch, seed=seed + 1)
    return JointBatchSampler(labeled, unlabeled, offset)


def _pair_precision(pairs, hidden: torch.Tensor) -> dict:
    """Share of the unlabeled positive (negative) pairs whose hidden true classes agree (differ): logged only."""
    a1, p, a2, n = (t.cpu() for t in pairs)
    out = {}
    if len(a1):
        out["pos_precision"] = float((hidden[a1] == hidden[p]).float().mean())
    if len(a2):
        out["neg_precision"] = float((hidden[a2] != hidden[n]).float().mean())
    return out


class BasisWarmup:
    """Which steps train W alone: the first `cap` steps, or, with `ce_ratio`, until L_CE / log K has dropped to it
    (at most `cap` steps). `end` is the first step after the warm-up once known; it is checkpointed (a task part)."""

    def __init__(self, cap: int, ce_ratio: float | None):
        self.cap, self.ce_ratio, self.end = cap, ce_ratio, None

    def active(self, step: int) -> bool:
        if self.end is None and step >= self.cap:
            self.end = self.cap
        return self.end is None

    def observe(self, step: int, ce_ratio: float) -> None:
        """After a warm-up step: ends the warm-up when its L_CE / log K reached the target."""
        if self.ce_ratio is not None and ce_ratio <= self.ce_ratio:
            self.end = step + 1

    def state_dict(self) -> dict:
        return {"end": -1 if self.end is None else self.end}

    def load_state_dict(self, state: dict) -> None:
        self.end = None if int(state["end"]) < 0 else int(state["end"])


class StudentTask:
    name = "student"

    def __init__(self, cfg: config.Config, bench: Benchmark, pseudo: PseudoLabels, ctx: RunContext,
                 init_weights: dict | None):
        s = cfg.student
        self.ctx, self.restart_averages = ctx, s.restart_averages
        self.model = ctx.trainable(build_model(cfg.model, cfg.data.channels, cfg.data.image_size))
        self.basis = build_basis(s, len(bench.labeled.class_names), cfg.model.embedding_dim)
        groups = [{"params": list(self.model.parameters())}]
        if self.basis is not None:
            self.basis.to(ctx.device)
            basis_lr = s.basis_lr or (s.lr or cfg.train.lr) * s.basis_lr_mult
            groups.append({"params": list(self.basis.parameters()), "lr": basis_lr})
        schedule = dataclasses.replace(cfg.train, epochs=s.epochs, lr=s.lr or cfg.train.lr)
        self.optimizer = build_optimizer(groups, schedule)
        self.scheduler = build_scheduler(self.optimizer, schedule)
        if init_weights is not None:
            self.model.load_state_dict(init_weights)
        self.objective = StudentObjective(s, build_loss(cfg.loss), build_miner(cfg.loss), self.basis)
        unlabeled = bench.unlabeled.subset(pseudo.indices)  # readable images only, aligned with pseudo.labels
        transform = train_transform(cfg.data, bench.photo)
        self.dataset = ConcatDataset([ImageDataset(bench.labeled, transform), ImageDataset(unlabeled, transform)])
        self.sampler = joint_sampler(cfg, ctx.seed, bench.labeled.labels, pseudo.labels, offset=len(bench.labeled))
        # The warm-up's steps come out of the student's epochs: at most warmup_max_fraction of them.
        cap = min(s.warmup_steps, int(s.warmup_max_fraction * s.epochs * len(self.sampler)))
        self.warmup = BasisWarmup(cap, s.warmup_ce_ratio)
        self.pseudo = torch.from_numpy(pseudo.labels)
        self.hidden = None if unlabeled.hidden_labels is None else torch.from_numpy(unlabeled.hidden_labels)

    def parts(self) -> dict:
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}
        if self.basis is not None:
            parts["basis"] = self.basis
        if self.basis is not None and self.warmup.ce_ratio is not None:  # a fixed warm-up follows from the step
            parts["warmup"] = self.warmup
        return parts

    def train(self) -> None:
        self.model.train()
        if self.basis is not None:
            self.basis.train()

    def step(self, batch: dict, global_step: int):
        device = self.ctx.device
        warmup = self.basis is not None and self.warmup.active(global_step)
        if self.basis is not None and self.restart_averages and 0 < (self.warmup.end or 0) == global_step:
            self.basis.restart_averages()  # the warm-up's averages lag behind the W it ended with
        ranks = self.ctx.ranks  # every rank sees the global batch's embeddings, in rank order
        labels = ranks.gather(batch["labels"].to(device))
        is_unlabeled = (labels < 0).cpu()  # labeled items carry their class, unlabeled ones -1: use their pseudo label
        unlabeled_idx = ranks.gather(batch["indices"].to(device)).cpu()[is_unlabeled]
        p_u = self.pseudo[unlabeled_idx].to(device)
        with torch.set_grad_enabled(not warmup), self.ctx.autocast():
            f = ranks.gather(self.model(batch["images"].to(device)), differentiable=not warmup)
        f_l, y_l, f_u = f[~is_unlabeled], labels[~is_unlabeled], f[is_unlabeled]
        loss, stats, pairs = (self.objective.warmup if warmup else self.objective)(f_l, y_l, f_u, p_u)
        if warmup:
            self.warmup.observe(global_step, stats["ce_ratio"])
        if pairs is not None and self.hidden is not None:
            stats.update(_pair_precision(pairs, self.hidden[unlabeled_idx]))
        return loss, {"warmup": warmup, **stats}


def train_student(cfg: config.Config, bench: Benchmark, pseudo: PseudoLabels, ctx: RunContext, out: Path,
                  init_weights: dict | None = None, on_step_end=()) -> StageResult:
    """Trains (or with ctx.resume continues from out/last.pt, to the step). init_weights: the model weights to
    start from. on_step_end: callables (global_step, row) run after each step (and its checkpoint, if one was due)."""
    return train_validate_test(lambda: StudentTask(cfg, bench, pseudo, ctx, init_weights), cfg, bench, ctx, out,
                               cfg.student.epochs, checkpoint_every=cfg.student.checkpoint_every,
                               on_step_end=on_step_end)
