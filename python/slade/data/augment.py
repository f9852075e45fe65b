"""Batch augmentations in plain torch ops (torchvision is optional), for the self-supervised views: a random affine
(rotation, scale, shift, shear: a resized crop is the zoom-in part of it), stroke thickening / thinning, contrast,
random erasing and, for photos only, a horizontal flip (a mirrored glyph is another character).

Input and output: float [B, C, H, W] in [0, 1], background 0 for glyphs (white ink on black)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewAugment:
    rotation: float = 10.0  # max |degrees|
    scale: tuple[float, float] = (0.8, 1.15)  # >1 zooms in (a crop), <1 zooms out
    shift: float = 0.1  # max |shift| as a fraction of the image side
    shear: float = 0.1  # max |shear| (radians, roughly)
    stroke_prob: float = 0.4  # chance of a 3x3 dilation or erosion (half each)
    contrast: tuple[float, float] = (0.7, 1.0)  # ink intensity factor
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.05, 0.2)  # share of the image a box erases
    flip: bool = False  # photos only

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return x
        x = self._affine(x, generator)
        x = self._stroke(x, generator)
        x = x * self._uniform(x.shape[0], self.contrast, x, generator).view(-1, 1, 1, 1)
        x = self._erase(x, generator)
        if self.flip:
            flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def _uniform(n: int, bounds, like: torch.Tensor, generator) -> torch.Tensor:
        lo, hi = bounds
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)

    def _affine(self, x, generator):
        n = x.shape[0]
        angle = self._uniform(n, (-self.rotation, self.rotation), x, generator) * (math.pi / 180)
        scale = self._uniform(n, self.scale, x, generator)
        shear = self._uniform(n, (-self.shear, self.shear), x, generator)
        shift = self._uniform(2 * n, (-2 * self.shift, 2 * self.shift), x, generator).view(n, 2)  # grid units: [-1, 1]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # the grid maps output -> input: inverse zoom
        theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                             torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _stroke(self, x, generator):
        pick = torch.rand(x.shape[0], generator=generator, device=x.device)
        dilated = F.max_pool2d(x, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
        half = self.stroke_prob / 2
        x = torch.where((pick < half).view(-1, 1, 1, 1), dilated, x)
        return torch.where(((pick >= half) & (pick < self.stroke_prob)).view(-1, 1, 1, 1), eroded, x)

    def _erase(self, x, generator):
        n, _, h, w = x.shape
        area = self._uniform(n, self.erase_area, x, generator) * h * w
        aspect = torch.exp(self._uniform(n, (-math.log(2), math.log(2)), x, generator))
        eh = (area * aspect).sqrt().clamp(1, h)
        ew = (area / aspect).sqrt().clamp(1, w)
        top = torch.rand(n, generator=generator, device=x.device) * (h - eh)
        left = torch.rand(n, generator=generator, device=x.device) * (w - ew)
        rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
        box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
               & (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1)))
        apply = torch.rand(n, generator=generator, device=x.device) < self.erase_prob
        return x.masked_fill((box & apply.view(-1, 1, 1)).unsqueeze(1), 0.0)
