"""Optimizer (AdamW or RMSprop) and per-epoch learning-rate schedule (linear warm-up, then cosine, step or none)."""
from __future__ import annotations

import math

import torch


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    """cfg: a validated config.TrainConfig (or a copy with the stage's own epochs and lr)."""
    optimizers = {"adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}  # keys: schema.OptimizerName
    return optimizers[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
    return cfg.gamma ** (t // max(1, cfg.step_size))  # "step", the last of schema.SchedulerName


def build_scheduler(optimizer, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg))
