"""The paper's protocol (docs/method.md, "Protocol and metrics"): the labeled classes split into class-disjoint folds;
fold i trains on the other folds' classes and validates on its own."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from slade.data.benchmark import Benchmark


def fold_benchmarks(bench: Benchmark, folds: int, seed: int) -> list[Benchmark]:
    """[bench] for folds=1; otherwise one benchmark per fold, sharing test, unlabeled and query/gallery sets."""
    if folds < 1:
        raise ValueError(f"selftrain.folds must be >= 1, got {folds}")
    if folds == 1:
        return [bench]
    n_classes = len(bench.labeled.class_names)
    if n_classes < 2 * folds:
        raise ValueError(f"selftrain.folds={folds} needs at least {2 * folds} labeled classes, got {n_classes}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n_classes), folds)
    out = []
    for i, held in enumerate(parts):
        kept = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
        out.append(replace(bench, name=f"{bench.name}-fold{i + 1}", labeled=bench.labeled.with_classes(kept, "labeled"),
                           val=bench.labeled.with_classes(np.sort(held), "val")))
    return out
