"""Built-in configurations. `slade run` without --config uses GLYPHS_CPU: the whole pipeline on the glyph benchmark
sized for two CPU cores (small CNN, 32 px, a subset of the novel classes, few epochs).

Its student selects confident pairs in the `agree` mode with the plain variant's negatives
(student.selection_negatives: pseudo), the best student of results/ABLATION.md at this size. METHOD.md's own rule
(literal, negatives under T2 = mu-) collapses the embedding here: --student.selection literal
--student.selection_negatives threshold brings it back."""
from __future__ import annotations

from slade import config

GLYPHS_CPU = {
    "data": {"name": "glyphs", "image_size": 32, "n_novel_classes": 300},
    "model": {"backbone": "small_cnn", "width": 16, "embedding_dim": 64},
    "train": {"epochs": 12, "batch_size": 32, "m_per_class": 4, "lr": 2e-3},
    "eval": {"clustering": True, "grid_queries": 8},
    "selfsup": {"epochs": 2, "batch_size": 128},
    "pseudo": {"k": 600},
    "student": {"epochs": 12, "warmup_steps": 100, "selection": "agree", "selection_negatives": "pseudo",
                "checkpoint_every": 50},
    "out_dir": "runs/slade",
}


def glyphs_cpu() -> config.Config:
    return config.from_dict(config.Config, GLYPHS_CPU)
