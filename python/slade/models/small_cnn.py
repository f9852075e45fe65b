"""A small VGG-style CNN: trains on 32-64 px glyphs on two CPU cores in minutes."""
from __future__ import annotations

import torch
from torch import nn


def _stage(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
              nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """4 stages of two 3x3 convs (width, 2w, 4w, 8w channels), 2x2 pooling between stages, global average pool."""

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels}, {width}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, c_in = [], in_channels
        for i, c_out in enumerate(widths):
            stages.append(_stage(c_in, c_out, pool=i < len(widths) - 1))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - 0.5) / 0.25).mean(dim=(2, 3))  # inputs in [0,1], roughly centred for BN
