"""Evaluates a model on a benchmark role: leave-one-out within `val` or `test`, or query -> gallery where the
benchmark has them (In-shop). `test_and_report` is the final test of a trained model, with its files."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from slade.data.benchmark import Benchmark
from slade.data.imageset import ImageSet
from slade.data.torch_dataset import SkipLog
from slade.data.transforms import eval_transform
from slade.evaluation.embedding import embed
from slade.evaluation.grid import save_retrieval_grid
from slade.evaluation.metrics import clustering_metrics, retrieval_metrics
from slade.evaluation.plots import plot_recall_at_k
from slade.runtime.context import RunContext


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


def evaluate_role(model, bench: Benchmark, role: str, cfg, ctx: RunContext, skip_log: SkipLog | None = None,
                  clustering: bool = False) -> RetrievalEval:
    """role: 'val' or 'test'. cfg: the run's config (its data and eval sections)."""
    if role not in ("val", "test"):
        raise ValueError(f"role must be 'val' or 'test', got {role!r}")
    transform = eval_transform(cfg.data, bench.photo)

    def run(images: ImageSet) -> Embedded:
        return Embedded(images, *embed(model, images, transform, ctx, cfg.eval.batch_size, skip_log=skip_log))

    if role == "test" and bench.query is not None:
        query, reference = run(bench.query), run(bench.gallery)
    else:
        images = getattr(bench, role)
        if images is None:
            raise ValueError(f"benchmark {bench.name!r} has no {role!r} set")
        query, reference = run(images), None
    metrics = None
    if ctx.ranks.main:  # every rank holds the embeddings; the metrics are computed once
        metrics = retrieval_metrics(query.embeddings, query.labels,
                                    None if reference is None else reference.embeddings,
                                    None if reference is None else reference.labels,
                                    cfg.eval.recall_ks, backend=cfg.eval.knn_backend)
        if clustering:
            metrics.update(clustering_metrics(query.embeddings, query.labels))
    metrics = ctx.ranks.broadcast(metrics)
    return RetrievalEval(metrics, query, reference)


def validation_role(bench: Benchmark, stage: str) -> str:
    """'val', or 'test' (with a warning) for a benchmark without validation classes."""
    if bench.val is not None:
        return "val"
    warnings.warn(f"{stage}: no validation classes (data.val_fraction=0): the best epoch is chosen on the test set",
                  stacklevel=3)
    return "test"


def test_and_report(model, bench: Benchmark, cfg, ctx: RunContext, out: Path, skip_log: SkipLog) -> dict:
    """Test metrics (with NMI/AMI when eval.clustering), written to out/test_metrics.json with a Recall@K plot and
    a retrieval grid."""
    result = evaluate_role(model, bench, "test", cfg, ctx, skip_log=skip_log, clustering=cfg.eval.clustering)
    if ctx.ranks.main:
        (out / "test_metrics.json").write_text(json.dumps(result.metrics, indent=2), encoding="utf-8")
        plot_recall_at_k(result.metrics, cfg.eval.recall_ks, out / "recall_at_k.png", title=f"{bench.name} test")
        if cfg.eval.grid_queries > 0:
            save_retrieval_grid(result, out / "retrievals.png", n_queries=cfg.eval.grid_queries, seed=ctx.seed)
    ctx.ranks.barrier()
    return result.metrics
