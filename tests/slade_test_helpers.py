"""Shared helpers of the training-layer tests: tiny image fixtures and a seconds-long glyph config."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from slade import config


def write_image(path: Path, seed: int, size: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


def tiny_glyph_config(tmp_path: Path, epochs: int = 2) -> config.Config:
    """A few classes, four faces, 24 px, a narrow CNN: each epoch takes about a second on two CPU cores."""
    cfg = config.Config()
    cfg.data.n_train_classes, cfg.data.n_test_classes, cfg.data.n_novel_classes = 14, 6, 0
    cfg.data.n_fonts, cfg.data.image_size, cfg.data.val_fraction = 4, 24, 0.25
    cfg.data.cache_dir = str(tmp_path / "glyph_cache")
    cfg.model.width, cfg.model.embedding_dim = 8, 32
    cfg.train.epochs, cfg.train.batch_size, cfg.train.m_per_class = epochs, 16, 4
    cfg.eval.recall_ks, cfg.eval.grid_queries, cfg.eval.clustering = [1, 2], 3, True
    cfg.out_dir = str(tmp_path / "run")
    return cfg
