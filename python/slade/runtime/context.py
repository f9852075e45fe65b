"""The run context every stage receives instead of loose parameters: where it runs (device, mixed precision), its
randomness (seed), its data loading (workers), whether it talks (progress), whether it continues a stopped run
(resume), and the run directory with one name for each stage's folder."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from slade.runtime.devices import resolve_device
from slade.runtime.distributed import Ranks, global_batchnorm, init_from_env


@dataclass(frozen=True)
class RunPaths:
    """The layout of a run directory: init/, [foldN/]teacher/, [foldN/]roundR/pseudo/, [foldN/]roundR/student/."""
    root: Path

    @property
    def init(self) -> Path:
        return self.root / "init"

    def fold(self, fold: int, folds: int) -> "RunPaths":
        """The paths of fold `fold` (1-based); a single-fold run keeps everything at the root."""
        return self if folds == 1 else RunPaths(self.root / f"fold{fold}")

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    def pseudo(self, round_: int) -> Path:
        return self.root / f"round{round_}" / "pseudo"

    def student(self, round_: int) -> Path:
        return self.root / f"round{round_}" / "student"


@dataclass(frozen=True)
class RunContext:
    device: torch.device
    amp: bool  # mixed precision in effect (requested and on CUDA)
    seed: int
    workers: int  # DataLoader worker processes, for training, embedding and pseudo-labelling alike
    progress: bool
    resume: bool
    paths: RunPaths
    ranks: Ranks = Ranks()  # this process's place in a torchrun job (runtime/distributed.py)
    sync_batchnorm: bool = True

    @classmethod
    def from_config(cls, cfg, progress: bool = True, resume: bool = False) -> "RunContext":
        """The context of `cfg`'s runtime section; the GPU decision is made here and nowhere else. Under torchrun
        the process joins its group, uses the GPU of its local rank, and only rank 0 shows progress."""
        rt = cfg.runtime
        ranks = init_from_env()
        device = resolve_device(rt.device)
        if ranks.active and device.type == "cuda":
            device = torch.device("cuda", ranks.local_rank)
        return cls(device=device, amp=rt.amp and device.type == "cuda", seed=rt.seed, workers=rt.workers,
                   progress=progress and ranks.main, resume=resume, paths=RunPaths(Path(rt.out_dir)), ranks=ranks,
                   sync_batchnorm=rt.sync_batchnorm)

    def at(self, root: Path) -> "RunContext":
        """The same context with its run directory at `root` (a fold, or a stage run on its own)."""
        return replace(self, paths=RunPaths(Path(root)))

    def trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on this run's device, with global-batch batch norm when the run spans processes."""
        model = model.to(self.device)
        return global_batchnorm(model, self.device) if self.ranks.active and self.sync_batchnorm else model

    def autocast(self):
        """float16 autocast on CUDA when amp is on; nothing on CPU (autocast would slow small CPU runs down)."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()
