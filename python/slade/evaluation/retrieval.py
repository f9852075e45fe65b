"""Evaluates a model on a benchmark role: leave-one-out within `val` or `test`, or query -> gallery where the
benchmark has them (In-shop)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from slade.data.imageset import ImageSet
from slade.data.benchmark import Benchmark
from slade.evaluation.embedding import embed
from slade.evaluation.metrics import clustering_metrics, retrieval_metrics


@dataclass
class Embedded:
    images: ImageSet
    embeddings: torch.Tensor  # [N', d], readable images only
    labels: torch.Tensor
    indices: torch.Tensor  # into images


@dataclass
class RetrievalEval:
    metrics: dict
    query: Embedded
    reference: Embedded | None  # None: leave-one-out within query


def evaluate_role(model, bench: Benchmark, role: str, transform, device, eval_cfg, amp: bool = False,
                  skip_log=None, clustering: bool = False, progress: bool = True) -> RetrievalEval:
    """role: 'val' or 'test'. eval_cfg: config.EvalConfig."""
    if role not in ("val", "test"):
        raise ValueError(f"role must be 'val' or 'test', got {role!r}")

    def run(images: ImageSet, name: str) -> Embedded:
        return Embedded(images, *embed(model, images, transform, device, eval_cfg.batch_size, amp=amp,
                                       skip_log=skip_log, role=name, progress=progress))

    if role == "test" and bench.query is not None:
        query, reference = run(bench.query, "query"), run(bench.gallery, "gallery")
        metrics = retrieval_metrics(query.embeddings, query.labels, reference.embeddings, reference.labels,
                                    eval_cfg.recall_ks, backend=eval_cfg.knn_backend)
    else:
        images = getattr(bench, role)
        if images is None:
            raise ValueError(f"benchmark {bench.name!r} has no {role!r} set")
        query, reference = run(images, role), None
        metrics = retrieval_metrics(query.embeddings, query.labels, recall_ks=eval_cfg.recall_ks,
                                    backend=eval_cfg.knn_backend)
    if clustering:
        metrics.update(clustering_metrics(query.embeddings, query.labels))
    return RetrievalEval(metrics, query, reference)
