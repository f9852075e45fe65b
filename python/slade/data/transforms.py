"""Image transforms with Pillow + numpy (torchvision is optional in this package). Output: float [C,H,W] in [0,1];
each backbone applies its own normalisation, so data code does not depend on the model."""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image


def to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


class EvalTransform:
    """Photos: shorter side to size*256/224, centre crop (the usual retrieval protocol). Synthetic arrays: resize."""

    def __init__(self, size: int, channels: int, photo: bool):
        self.size, self.channels, self.photo = size, channels, photo

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if self.photo:
            short = round(self.size * 256 / 224)
            w, h = img.size
            scale = short / min(w, h)
            img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
        elif img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        return to_tensor(img, self.channels)


class TrainTransform:
    """Random resized crop (scale 0.16-1, aspect 3/4-4/3) and horizontal flip, for photos only: flipping or cropping
    a glyph changes its class, and the glyph benchmark already carries its own jitter."""

    def __init__(self, size: int, channels: int, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.channels, self.scale, self.ratio = size, channels, scale, ratio

    def _crop_box(self, w: int, h: int):
        for _ in range(10):
            area = w * h * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = random.randint(0, w - cw), random.randint(0, h - ch)
                return left, top, left + cw, top + ch
        side = min(w, h)
        return (w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.crop(self._crop_box(*img.size)).resize((self.size, self.size), Image.BILINEAR)
        if random.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(img, self.channels)


def eval_transform(data_cfg, photo: bool) -> EvalTransform:
    """The transform of evaluation, embedding and pseudo-labelling (data_cfg: config.DataConfig)."""
    return EvalTransform(data_cfg.image_size, data_cfg.channels, photo)


def train_transform(data_cfg, photo: bool):
    """Crops and flips for photos only: they would change a glyph's class."""
    return TrainTransform(data_cfg.image_size, data_cfg.channels) if photo else eval_transform(data_cfg, photo)
