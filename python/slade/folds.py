"""The paper's protocol (METHOD.md, "Protocol and metrics"): the labeled classes split into class-disjoint folds;
fold i trains on the other folds' classes and validates on its own, and the test embedding concatenates the
folds' models (4 x 128-d -> 512-d)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .data.roles import Benchmark
from .embed import embed
from .evaluate import clustering_metrics, retrieval_metrics
from .models import build_model


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


def _embed_concatenated(states: list[dict], cfg, images, transform, device, amp: bool, progress: bool):
    parts, labels = [], None
    for state in states:
        model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
        model.load_state_dict(state)
        emb, labels, _ = embed(model, images, transform, device, cfg.eval.batch_size, amp=amp, progress=progress)
        parts.append(emb)
    return F.normalize(torch.cat(parts, dim=1), dim=1), labels


def concatenated_test_metrics(states: list[dict], cfg, bench: Benchmark, transform, device, amp: bool = False,
                              progress: bool = True) -> dict:
    """Test metrics of the concatenated embeddings of several models (model state dicts)."""
    if not states:
        raise ValueError("states is empty: no model to evaluate")
    if bench.query is not None:
        query, q_labels = _embed_concatenated(states, cfg, bench.query, transform, device, amp, progress)
        gallery, g_labels = _embed_concatenated(states, cfg, bench.gallery, transform, device, amp, progress)
        return retrieval_metrics(query, q_labels, gallery, g_labels, cfg.eval.recall_ks, backend=cfg.eval.knn_backend)
    emb, labels = _embed_concatenated(states, cfg, bench.test, transform, device, amp, progress)
    metrics = retrieval_metrics(emb, labels, recall_ks=cfg.eval.recall_ks, backend=cfg.eval.knn_backend)
    if cfg.eval.clustering:
        metrics.update(clustering_metrics(emb, labels))
    return metrics
