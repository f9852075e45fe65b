"""Stage 1 of SLADE (METHOD.md): self-supervised init of the backbone on the labeled and unlabeled images together,
labels unused. NT-Xent (SimCLR) on two augmented views, through a projection MLP that is dropped afterwards; the
cosine similarities come from slade_ext's basis-similarity kernel with an identity basis.

Stage directory: last.pt (every epoch, full state, for --resume), init.pt (the model weights the teacher and the
student start from), metrics.jsonl."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from slade_ext import ops

from slade import config
from slade.runtime import checkpoint
from slade.data.augment import ViewAugment
from slade.data.benchmark import Benchmark
from slade.data.samplers import RandomBatchSampler
from slade.data.torch_dataset import ImageDataset, collate_skipping_unreadable
from slade.runtime.devices import autocast
from slade.runtime.metrics_log import MetricsLog
from slade.models import build_model
from slade.training.optim import build_optimizer, build_scheduler
from slade.runtime.seeding import seed_everything


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other 2B - 1 views by cosine similarity."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [B, d], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    b = z1.shape[0]
    z = torch.cat([z1, z2]).float()
    identity = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    sim = ops.basis_similarity(z, identity) / temperature  # cos(I z_i, I z_j) = plain cosine
    self_pair = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_pair, float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, partner)


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


def train_selfsup(cfg: config.Config, bench: Benchmark, out: Path, device, resume: bool = False,
                  progress: bool = True, on_epoch_end=()) -> dict:
    """Trains (or continues from out/last.pt) and returns the model's state dict, also saved as out/init.pt."""
    from slade.stages.teacher import eval_transform  # resize only: the views are made on the batch tensors

    s = cfg.selfsup
    out.mkdir(parents=True, exist_ok=True)
    amp = cfg.train.amp and device.type == "cuda"
    sets = [bench.labeled] + ([bench.unlabeled] if bench.unlabeled is not None else [])
    dataset = ConcatDataset([ImageDataset(images, eval_transform(cfg, bench.photo)) for images in sets])
    if s.batch_size < 2 or s.batch_size > len(dataset):
        raise ValueError(f"selfsup.batch_size must be between 2 and the {len(dataset)} images, got {s.batch_size}")
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    projection = Projection(model.backbone.out_features, s.projection_dim).to(device)
    schedule = dataclasses.replace(cfg.train, epochs=s.epochs, lr=s.lr, warmup_epochs=0)
    optimizer = build_optimizer(list(model.backbone.parameters()) + list(projection.parameters()), schedule)
    scheduler = build_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    sampler = RandomBatchSampler(len(dataset), s.batch_size, seed=cfg.train.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.workers,
                        collate_fn=collate_skipping_unreadable)
    augment = view_augment(cfg, bench.photo)

    history, start, last_path = [], 0, out / "last.pt"
    if resume and last_path.is_file():
        state = checkpoint.load(last_path)
        checkpoint.restore(state, model=model, projection=projection, optimizer=optimizer, scheduler=scheduler,
                           scaler=scaler)
        history, start = state["history"], state["epoch"]
    log = MetricsLog(out / "metrics.jsonl")
    log.restart(history)

    for epoch in range(start, s.epochs):
        began = time.time()
        seed_everything(cfg.train.seed, epoch + 1)  # the views of an epoch depend only on (seed, epoch)
        sampler.set_epoch(epoch)
        model.train()
        total, steps = 0.0, 0
        bar = tqdm(loader, desc=f"self-supervised epoch {epoch + 1}", leave=False, disable=not progress)
        for batch in bar:
            images = batch["images"].to(device)
            if len(images) < 2:
                continue
            with autocast(device, amp):
                z1 = projection(model.backbone(augment(images)))
                z2 = projection(model.backbone(augment(images)))
            loss = nt_xent(z1, z2, s.temperature)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
        scheduler.step()
        row = {"epoch": epoch + 1, "loss": total / max(1, steps), "seconds": round(time.time() - began, 2)}
        history.append(row)
        checkpoint.save_atomic({"epoch": epoch + 1, "model": model.state_dict(), "projection": projection.state_dict(),
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "history": history}, last_path)
        log.append(row)
        if progress:
            tqdm.write(f"self-supervised epoch {epoch + 1}/{s.epochs}  NT-Xent {row['loss']:.4f}  ({row['seconds']} s)")
        for hook in on_epoch_end:
            hook(epoch + 1, row)
    state = {"model": model.state_dict(), "config": config.to_dict(cfg), "history": history}
    checkpoint.save_atomic(state, out / "init.pt")
    return state["model"]
