"""Optimizer (AdamW or RMSprop) and per-epoch learning-rate schedule (linear warm-up, then cosine, step or none)."""
from __future__ import annotations

import math

import torch

OPTIMIZERS = ("adamw", "rmsprop")
SCHEDULERS = ("none", "cosine", "step")


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    """cfg: config.TrainConfig."""
    if cfg.lr <= 0:
        raise ValueError(f"train.lr must be positive, got {cfg.lr}")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")


def lr_factor(epoch: int, cfg) -> float:
    """Multiplier of the base learning rate during `epoch` (0-based)."""
    warmup = cfg.warmup_epochs
    if epoch < warmup:
        return (epoch + 1) / warmup
    t = epoch - warmup
    if cfg.scheduler == "none":
        return 1.0
    if cfg.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / max(1, cfg.epochs - warmup)))
    if cfg.scheduler == "step":
        return cfg.gamma ** (t // max(1, cfg.step_size))
    raise ValueError(f"train.scheduler must be one of {SCHEDULERS}, got {cfg.scheduler!r}")


def build_scheduler(optimizer, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    if cfg.warmup_epochs < 0:
        raise ValueError(f"train.warmup_epochs must be >= 0, got {cfg.warmup_epochs}")
    lr_factor(0, cfg)  # validates the scheduler name now rather than after the first epoch
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg))
