"""The run context every stage receives instead of loose parameters: where it runs (device, mixed precision), its
randomness (seed), its data loading (workers), whether it talks (progress), whether it continues a stopped run
(resume), and the run directory with one name for each stage's folder."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from slade.runtime.devices import resolve_device


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

    @classmethod
    def from_config(cls, cfg, progress: bool = True, resume: bool = False) -> "RunContext":
        """The context of `cfg`'s runtime section; the GPU decision is made here and nowhere else."""
        rt = cfg.runtime
        device = resolve_device(rt.device)
        return cls(device=device, amp=rt.amp and device.type == "cuda", seed=rt.seed, workers=rt.workers,
                   progress=progress, resume=resume, paths=RunPaths(Path(rt.out_dir)))

    def at(self, root: Path) -> "RunContext":
        """The same context with its run directory at `root` (a fold, or a stage run on its own)."""
        return replace(self, paths=RunPaths(Path(root)))

    def autocast(self):
        """float16 autocast on CUDA when amp is on; nothing on CPU (autocast would slow small CPU runs down)."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()
