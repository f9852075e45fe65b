"""The test metrics of the paper's fold protocol (docs/method.md, "Protocol and metrics"): the embeddings of the folds'
models concatenated (4 x 128-d -> 512-d) and L2-normalised."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from slade.data.benchmark import Benchmark
from slade.evaluation.embedding import embed
from slade.evaluation.metrics import clustering_metrics, retrieval_metrics
from slade.data.transforms import eval_transform
from slade.models import build_model
from slade.runtime.context import RunContext


def _embed_concatenated(states: list[dict], cfg, images, photo: bool, ctx: RunContext):
    transform = eval_transform(cfg.data, photo)
    parts, labels = [], None
    for state in states:
        model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(ctx.device)
        model.load_state_dict(state)
        emb, labels, _ = embed(model, images, transform, ctx, cfg.eval.batch_size)
        parts.append(emb)
    return F.normalize(torch.cat(parts, dim=1), dim=1), labels


def concatenated_test_metrics(states: list[dict], cfg, bench: Benchmark, ctx: RunContext) -> dict:
    """Test metrics of the concatenated embeddings of several models (model state dicts)."""
    if not states:
        raise ValueError("states is empty: no model to evaluate")
    if bench.query is not None:
        query, q_labels = _embed_concatenated(states, cfg, bench.query, bench.photo, ctx)
        gallery, g_labels = _embed_concatenated(states, cfg, bench.gallery, bench.photo, ctx)
        return retrieval_metrics(query, q_labels, gallery, g_labels, cfg.eval.recall_ks, backend=cfg.eval.knn_backend)
    emb, labels = _embed_concatenated(states, cfg, bench.test, bench.photo, ctx)
    metrics = retrieval_metrics(emb, labels, recall_ks=cfg.eval.recall_ks, backend=cfg.eval.knn_backend)
    if cfg.eval.clustering:
        metrics.update(clustering_metrics(emb, labels))
    return metrics
