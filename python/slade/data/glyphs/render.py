"""Renders one glyph with Pillow, optionally with the benchmark's seeded jitter (size, shift, rotation, stroke)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUPERSAMPLE = 2  # draw at 2x and downsample, so that stroke changes of one fine pixel are half a pixel at output size


@dataclass(frozen=True)
class Jitter:
    """Ranges of the per-instance jitter. Defaults make raw-pixel retrieval hard (docs/data.md: R@1 0.85 -> ~0.1)."""

    scale: tuple[float, float] = (0.65, 0.95)  # glyph em size / image size
    shift: float = 0.12  # max |shift| / image size, each axis
    rotation: float = 12.0  # max |degrees|
    stroke: tuple[int, ...] = (-1, 0, 0, 1, 2)  # fine pixels of erosion (<0) or dilation (>0)


NO_JITTER = Jitter(scale=(0.85, 0.85), shift=0.0, rotation=0.0, stroke=(0,))


@lru_cache(maxsize=64)
def _font(path: str, index: int, em: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, em, index=index)


def instance_rng(seed: int, char: str, face_key: str) -> np.random.Generator:
    """Deterministic per (seed, class, face): every run renders the same data set."""
    return np.random.default_rng([seed, ord(char), zlib.crc32(face_key.encode())])


def render_glyph(char: str, path: str, index: int, size: int, jitter: Jitter, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size], white glyph on black, centred on its ink box before the jitter moves it."""
    big = size * SUPERSAMPLE
    em = max(4, round(big * rng.uniform(*jitter.scale)))
    font = _font(path, index, em)
    left, top, right, bottom = font.getbbox(char)
    dx, dy = rng.uniform(-jitter.shift, jitter.shift, size=2) * big
    x = (big - (right - left)) / 2 - left + dx
    y = (big - (bottom - top)) / 2 - top + dy
    canvas = Image.new("L", (big, big), 0)
    ImageDraw.Draw(canvas).text((x, y), char, fill=255, font=font)
    stroke = int(rng.choice(jitter.stroke))
    if stroke:
        grow = ImageFilter.MaxFilter if stroke > 0 else ImageFilter.MinFilter
        canvas = canvas.filter(grow(2 * abs(stroke) + 1))
    angle = rng.uniform(-jitter.rotation, jitter.rotation)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.BILINEAR, fillcolor=0)
    return np.asarray(canvas.resize((size, size), Image.LANCZOS), dtype=np.uint8)
