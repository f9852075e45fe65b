"""A seconds-long SLADE configuration on the tiny glyph set of slade_test_helpers."""
from __future__ import annotations

from pathlib import Path

from slade import config
from slade_test_helpers import tiny_glyph_config


def tiny_selftrain_config(tmp_path: Path, student_epochs: int = 2) -> config.Config:
    cfg = tiny_glyph_config(tmp_path, epochs=2)
    cfg.data.n_novel_classes = 6  # unlabeled: 10 fit classes x 2 faces + 6 novel x 4 faces = 44 images
    cfg.eval.clustering = False
    cfg.selfsup.epochs, cfg.selfsup.batch_size = 1, 32
    cfg.pseudo.k = 8
    s = cfg.student
    s.epochs, s.labeled_batch, s.unlabeled_batch, s.unlabeled_m = student_epochs, 16, 16, 4
    s.warmup_steps, s.checkpoint_every = 1, 1
    return cfg
