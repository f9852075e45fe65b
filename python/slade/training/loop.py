"""The one training loop. It owns what every stage's training has in common: per-epoch seeding, the mixed-precision
scaler step, validation, best.pt / last.pt in one checkpoint format, mid-epoch checkpoints, resume (exact: a run
stopped anywhere ends as an uninterrupted one would, bit for bit at runtime.workers=0), the metrics logs
(metrics.jsonl per epoch, steps.jsonl per step), curves and hooks, and, under torchrun, the data-parallel split
(runtime/distributed.py): each rank loads its slice of the global batch, the gradients are averaged over ranks,
and only rank 0 writes. A stage supplies a `Task`: its parts and its step (batch -> loss and statistics; the step
gathers the global batch's embeddings through ctx.ranks), and optionally a validation.

Stage directory: last.pt (every `checkpoint_every` steps and at each epoch's end), best.pt (weights of the best
validation epoch), metrics.jsonl, steps.jsonl, curves.png."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from slade.data.torch_dataset import SkipLog, collate_skipping_unreadable
from slade.evaluation.plots import plot_training_curves
from slade.runtime import checkpoint
from slade.runtime.context import RunContext
from slade.runtime.metrics_log import MetricsLog
from slade.runtime.seeding import rng_state, seed_everything, set_rng_state


class Task(Protocol):
    """What a stage gives the loop."""

    name: str  # the stage, for progress lines and the skip log
    model: torch.nn.Module  # the network whose weights best.pt keeps
    dataset: Dataset
    sampler: object  # batch sampler with set_epoch(epoch)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per epoch

    def parts(self) -> dict:
        """Every object with state_dict / load_state_dict that a checkpoint must hold (model, optimizer, ...)."""

    def train(self) -> None:
        """Puts the trainable modules in training mode."""

    def step(self, batch: dict, global_step: int) -> tuple[torch.Tensor, dict] | None:
        """(loss, statistics for the step's log row), or None to skip the batch (too small after unreadable
        images were dropped)."""


@dataclass
class LoopResult:
    history: list[dict]  # one row per epoch
    steps: list[dict]  # one row per trained step
    best: dict | None  # {'epoch', 'map_at_r'} of the best validation epoch; None without validation


@dataclass
class Loop:
    task: Task
    ctx: RunContext
    out: Path
    epochs: int
    config: dict  # saved in every checkpoint
    validate: Callable[[torch.nn.Module, SkipLog], dict] | None = None  # model -> validation metrics
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: epoch ends only)
    on_step_end: tuple = ()  # callables (global_step, row)
    on_epoch_end: tuple = ()  # callables (epoch, row)
    skip_log: SkipLog = field(default_factory=SkipLog)

    def __post_init__(self):
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.ctx.amp)
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.last_path = self.out / "last.pt"
        self.epoch_log, self.step_log = MetricsLog(self.out / "metrics.jsonl"), MetricsLog(self.out / "steps.jsonl")
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "steps": [], "best": None}

    def _stateful(self) -> dict:
        return {**self.task.parts(), "scaler": self.scaler}

    def _save_last(self, epoch: int, step_in_epoch: int) -> None:
        if self.ctx.ranks.main:
            self._write_last(epoch, step_in_epoch)
        self.ctx.ranks.barrier()

    def _write_last(self, epoch: int, step_in_epoch: int) -> None:
        checkpoint.save_atomic({"format": checkpoint.FORMAT, "stage": self.task.name,
                                **{k: v for k, v in self.state.items() if k not in ("epoch", "step_in_epoch")},
                                "epoch": epoch, "step_in_epoch": step_in_epoch, "rng": rng_state(),
                                **{name: obj.state_dict() for name, obj in self._stateful().items()},
                                "config": self.config}, self.last_path)

    def _resume(self) -> dict | None:
        """The saved generators of an interrupted epoch, after restoring everything else from last.pt."""
        if not (self.ctx.resume and self.last_path.is_file()):
            return None
        saved = checkpoint.load(self.last_path, f"{self.task.name} checkpoint",
                                keys=("format", "stage", *self.state, "rng"))
        checkpoint.restore(saved, self.last_path, **self._stateful())
        self.state = {k: saved[k] for k in self.state}
        return saved["rng"]

    def _step(self, batch: dict) -> dict | None:
        out = self.task.step(batch, self.state["global_step"])
        if out is None:
            return None
        loss, stats = out
        self.task.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.ctx.ranks.average_gradients(p for group in self.task.optimizer.param_groups for p in group["params"])
        self.scaler.step(self.task.optimizer)
        self.scaler.update()
        return {"loss": loss.item(), **stats}

    def _epoch(self, epoch: int, saved_rng: dict | None) -> None:
        task, ctx, state = self.task, self.ctx, self.state
        began, skip = time.time(), state["step_in_epoch"]
        seed_everything(ctx.seed, epoch + 1)  # each epoch's randomness depends only on (seed, epoch)
        task.sampler.set_epoch(epoch)
        batches = [ctx.ranks.shard(batch) for batch in task.sampler]  # every rank draws the same global batches
        loader = DataLoader(task.dataset, batch_sampler=batches[skip:], num_workers=ctx.workers,
                            collate_fn=collate_skipping_unreadable)
        lr = task.optimizer.param_groups[0]["lr"]
        task.train()
        batch_iter = iter(loader)  # draws the loader's base seed: the same draw whether resumed or not
        if saved_rng is not None and skip:
            set_rng_state(saved_rng)  # continue the interrupted epoch's random streams where they were
        bar = tqdm(batch_iter, desc=f"{task.name} epoch {epoch + 1}", leave=False, disable=not ctx.progress,
                   initial=skip, total=len(batches))
        for i, batch in enumerate(bar, start=skip):
            self.skip_log.add(batch["skipped"])
            row = self._step(batch)
            if row is None:
                continue
            state["global_step"] += 1
            row = {"step": state["global_step"], "epoch": epoch + 1, **row}
            state["steps"].append(row)
            if ctx.ranks.main:
                self.step_log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if self.checkpoint_every and state["global_step"] % self.checkpoint_every == 0 and i + 1 < len(batches):
                self._save_last(epoch, i + 1)
            for hook in self.on_step_end:
                hook(state["global_step"], row)
        task.scheduler.step()
        trained = [r for r in state["steps"] if r["epoch"] == epoch + 1 and not r.get("warmup")]
        row = {"epoch": epoch + 1, "loss": sum(r["loss"] for r in trained) / max(1, len(trained)), "lr": lr}
        if self.validate is not None:
            row["val"] = val = self.validate(task.model, self.skip_log)
            best = state["best"]
            if best is None or val["map_at_r"] > best["map_at_r"]:
                state["best"] = {"epoch": epoch + 1, "map_at_r": val["map_at_r"]}
                if ctx.ranks.main:
                    checkpoint.save_atomic({"format": checkpoint.FORMAT, "stage": task.name, "epoch": epoch + 1,
                                            "model": task.model.state_dict(), "config": self.config, "val": val},
                                           self.out / "best.pt")
        row["seconds"] = round(time.time() - began, 2)
        state["history"].append(row)
        state["step_in_epoch"] = 0
        if ctx.ranks.main:
            self.epoch_log.append(row)
            plot_training_curves(state["history"], self.out / "curves.png")
        self._save_last(epoch + 1, 0)
        if ctx.progress:
            val_text = (f"  val MAP@R {row['val']['map_at_r']:.4f}  P@1 {row['val']['precision_at_1']:.4f}"
                        if "val" in row else "")
            tqdm.write(f"{task.name} epoch {epoch + 1}/{self.epochs}  loss {row['loss']:.4f}{val_text}  "
                       f"({row['seconds']} s)")
        for hook in self.on_epoch_end:
            hook(epoch + 1, row)

    def run(self) -> LoopResult:
        saved_rng = self._resume()
        if self.ctx.ranks.main:  # a resumed run drops the rows written after its checkpoint
            self.epoch_log.restart(self.state["history"])
            self.step_log.restart(self.state["steps"])
        for epoch in range(self.state["epoch"], self.epochs):
            self._epoch(epoch, saved_rng)
            saved_rng = None
        self.ctx.ranks.merge_skips(self.skip_log)
        return LoopResult(self.state["history"], self.state["steps"], self.state["best"])

    def load_best(self) -> None:
        """Puts the best validation epoch's weights into the model."""
        saved = checkpoint.load(self.out / "best.pt", f"{self.task.name} best checkpoint", keys=("format", "model"))
        checkpoint.restore(saved, self.out / "best.pt", model=self.task.model)
