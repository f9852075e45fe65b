"""Seconds-long configurations (a tiny glyph teacher run and a tiny SLADE pipeline run) and their run context."""
from __future__ import annotations

from pathlib import Path

from slade import config
from slade.runtime.context import RunContext


def tiny_glyph_config(tmp_path: Path, epochs: int = 2) -> config.Config:
    """A few classes, four faces, 24 px, a narrow CNN: each epoch takes about a second on two CPU cores."""
    cfg = config.Config()
    cfg.data.n_train_classes, cfg.data.n_test_classes, cfg.data.n_novel_classes = 14, 6, 0
    cfg.data.n_fonts, cfg.data.image_size, cfg.data.val_fraction = 4, 24, 0.25
    cfg.data.cache_dir = str(tmp_path / "glyph_cache")
    cfg.model.width, cfg.model.embedding_dim = 8, 32
    cfg.train.epochs, cfg.train.batch_size, cfg.train.m_per_class = epochs, 16, 4
    cfg.eval.recall_ks, cfg.eval.grid_queries, cfg.eval.clustering = [1, 2], 3, True
    cfg.runtime.out_dir = str(tmp_path / "run")
    return cfg


def tiny_selftrain_config(tmp_path: Path, student_epochs: int = 2) -> config.Config:
    cfg = tiny_glyph_config(tmp_path, epochs=2)
    cfg.data.n_novel_classes = 6  # unlabeled: 10 fit classes x 2 faces + 6 novel x 4 faces = 44 images
    cfg.eval.clustering = False
    cfg.selfsup.epochs, cfg.selfsup.batch_size = 1, 32
    cfg.pseudo.k = 8
    s = cfg.student
    s.epochs, s.labeled_batch, s.unlabeled_batch, s.unlabeled_m = student_epochs, 16, 16, 4
    s.warmup_steps, s.checkpoint_every = 1, 1
    s.warmup_max_fraction = 1.0  # a tiny student has a handful of steps: keep its one warm-up step
    return cfg


def quiet_context(cfg: config.Config, resume: bool = False) -> RunContext:
    """The run context of `cfg` without progress bars."""
    return RunContext.from_config(cfg, progress=False, resume=resume)
