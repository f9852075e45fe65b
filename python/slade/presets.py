"""Built-in configurations. `slade run` without --config uses GLYPHS_CPU: the whole pipeline on the glyph benchmark
sized for two CPU cores (small CNN, 32 px, a subset of the novel classes, few epochs).

Its student keeps the feature basis but not the confident-pair selection (METHOD.md's default, literal): at this size
METHOD.md's selection collapses the embedding, and no selection variant beat the basis alone (results/ABLATION.md).
--student.selection literal (or agree, with --student.selection_negatives pseudo) brings it back."""
from __future__ import annotations

from . import config

GLYPHS_CPU = {
    "data": {"name": "glyphs", "image_size": 32, "n_novel_classes": 300},
    "model": {"backbone": "small_cnn", "width": 16, "embedding_dim": 64},
    "train": {"epochs": 12, "batch_size": 32, "m_per_class": 4, "lr": 2e-3},
    "eval": {"clustering": True, "grid_queries": 8},
    "selfsup": {"epochs": 2, "batch_size": 128},
    "pseudo": {"k": 600},
    "student": {"epochs": 12, "warmup_steps": 100, "selection": "none", "checkpoint_every": 50},
    "out_dir": "runs/slade",
}


def glyphs_cpu() -> config.Config:
    return config.from_dict(config.Config, GLYPHS_CPU)
