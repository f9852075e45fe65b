"""Stage 1 of SLADE (docs/method.md): self-supervised init of the backbone on the labeled and unlabeled images
together, labels unused, through the one training loop. NT-Xent (SimCLR) on two augmented views, through a
projection MLP that is dropped afterwards; the loss is slade_ext's NTXentLoss, which never holds the 2B x 2B
similarities, so the batch can grow.

Stage directory: the loop's files (last.pt, metrics.jsonl, steps.jsonl, curves.png), init.pt (the model weights the
teacher and the student start from) and result.json."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset

from slade_ext import losses

from slade import config
from slade.data.augment import ViewAugment
from slade.data.benchmark import Benchmark
from slade.data.samplers import RandomBatchSampler
from slade.data.torch_dataset import ImageDataset
from slade.data.transforms import eval_transform
from slade.models import build_model
from slade.runtime import checkpoint
from slade.runtime.context import RunContext
from slade.runtime.seeding import seed_everything
from slade.runtime.stage_result import StageResult
from slade.training.loop import Loop
from slade.training.optim import build_optimizer, build_scheduler


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other 2B - 1 views by cosine similarity
    (slade_ext's tiled NTXentLoss, with one label per pair of views)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [B, d], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    partner = torch.arange(z1.shape[0], device=z1.device).repeat(2)
    return losses.NTXentLoss(temperature)(torch.cat([z1, z2]).float(), partner)


class Projection(nn.Module):
    """The SimCLR projection MLP on backbone features; only the backbone is kept for later stages."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, in_features), nn.ReLU(inplace=True),
                                 nn.Linear(in_features, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def view_augment(cfg: config.Config, photo: bool) -> ViewAugment:
    s = cfg.selfsup
    return ViewAugment(rotation=s.rotation, scale=tuple(s.scale), shift=s.shift, erase_prob=s.erase_prob, flip=photo)


class SelfSupTask:
    name = "selfsup"

    def __init__(self, cfg: config.Config, bench: Benchmark, ctx: RunContext):
        s = cfg.selfsup
        self.ctx, self.temperature = ctx, s.temperature
        sets = [bench.labeled] + ([bench.unlabeled] if bench.unlabeled is not None else [])
        # Resize only: the views are made on the batch tensors.
        self.dataset = ConcatDataset([ImageDataset(images, eval_transform(cfg.data, bench.photo)) for images in sets])
        if s.batch_size > len(self.dataset):
            raise ValueError(f"selfsup.batch_size={s.batch_size} exceeds the {len(self.dataset)} images")
        self.model = ctx.trainable(build_model(cfg.model, cfg.data.channels, cfg.data.image_size))
        self.projection = Projection(self.model.backbone.out_features, s.projection_dim).to(ctx.device)
        schedule = dataclasses.replace(cfg.train, epochs=s.epochs, lr=s.lr, warmup_epochs=0)
        self.optimizer = build_optimizer(list(self.model.backbone.parameters()) + list(self.projection.parameters()),
                                         schedule)
        self.scheduler = build_scheduler(self.optimizer, schedule)
        self.sampler = RandomBatchSampler(len(self.dataset), s.batch_size, seed=ctx.seed)
        self.augment = view_augment(cfg, bench.photo)

    def parts(self) -> dict:
        return {"model": self.model, "projection": self.projection, "optimizer": self.optimizer,
                "scheduler": self.scheduler}

    def train(self) -> None:
        self.model.train()

    def step(self, batch: dict, global_step: int):
        ranks = self.ctx.ranks
        # The views of the global batch, drawn alike on every rank (same generator state); each forwards its rows.
        images = ranks.gather(batch["images"].to(self.ctx.device))
        if len(images) < 2:
            return None
        mine = ranks.shard(torch.arange(len(images)))
        with self.ctx.autocast():
            z1 = ranks.gather(self.projection(self.model.backbone(self.augment(images)[mine])), differentiable=True)
            z2 = ranks.gather(self.projection(self.model.backbone(self.augment(images)[mine])), differentiable=True)
        return nt_xent(z1, z2, self.temperature), {}


def train_selfsup(cfg: config.Config, bench: Benchmark, ctx: RunContext, out: Path, on_epoch_end=()) -> StageResult:
    """Trains (or with ctx.resume continues from out/last.pt); the model's weights go to out/init.pt. The result's
    metrics: the last epoch's NT-Xent."""
    began = time.time()
    seed_everything(ctx.seed)
    task = SelfSupTask(cfg, bench, ctx)
    loop = Loop(task, ctx, out, cfg.selfsup.epochs, config.to_dict(cfg), on_epoch_end=on_epoch_end)
    trained = loop.run()
    if ctx.ranks.main:
        loop.skip_log.report("selfsup")
        checkpoint.save_atomic({"format": checkpoint.FORMAT, "stage": "selfsup", "model": task.model.state_dict(),
                                "config": config.to_dict(cfg)}, Path(out) / "init.pt")
    return StageResult("selfsup", Path(out), round(time.time() - began, 1),
                       metrics={"epochs": len(trained.history), "final_loss": trained.history[-1]["loss"]},
                       history=trained.history, steps=trained.steps, skipped=loop.skip_log.paths(),
                       weights_file="init.pt",
                       weights=task.model.state_dict()).save(ctx.ranks)
