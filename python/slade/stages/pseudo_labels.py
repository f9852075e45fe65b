"""Stage 3 of SLADE (docs/method.md): the teacher embeds the unlabeled set (eval transform, L2-normalised), k-means
(faiss, on the GPU when one is visible; plain torch when faiss is missing) clusters it, and each image takes the id of
its nearest centroid. Cluster sizes are logged, and purity / NMI against the hidden true classes where the
benchmark knows them (glyphs): those are never used for training."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from slade.data.benchmark import Benchmark
from slade.data.imageset import ImageSet
from slade.data.pseudo_labels import PseudoLabels, save_pseudo_labels
from slade.data.torch_dataset import SkipLog
from slade.data.transforms import eval_transform
from slade.evaluation.embedding import embed
from slade.evaluation.metrics import nmi, purity
from slade.models import build_model
from slade.runtime.context import RunContext
from slade.runtime.stage_result import StageResult
from slade.search.kmeans import kmeans_assign

def check_cluster_count(k: int, n: int) -> None:
    """k-means needs at least one image per cluster."""
    if k < 1:
        raise ValueError(f"pseudo.k must be positive, got {k}")
    if n < k:
        raise ValueError(f"pseudo.k={k} clusters but the unlabeled set has only {n} (readable) images: "
                         f"lower pseudo.k or add unlabeled images")


def cluster(x: np.ndarray, k: int, seed: int = 0, iterations: int = 20, gpu: bool = True) -> np.ndarray:
    """Nearest-centroid ids of k-means on x [N, d] (faiss, on the GPU when `gpu` and one is visible; else torch)."""
    check_cluster_count(k, len(x))
    return kmeans_assign(x, k, seed=seed, iterations=iterations, gpu=gpu)


def quality(labels: np.ndarray, k: int, hidden: np.ndarray | None) -> dict:
    sizes = np.bincount(labels, minlength=k)
    out = {"k": k, "n": int(len(labels)), "empty_clusters": int((sizes == 0).sum()),
           "size_min": int(sizes.min()), "size_median": float(np.median(sizes)), "size_max": int(sizes.max()),
           "sizes": sizes.tolist()}
    if hidden is not None:
        out.update(purity=purity(labels, hidden), nmi=nmi(labels, hidden), hidden_classes=int(len(np.unique(hidden))))
    return out


def make_pseudo_labels(model, unlabeled: ImageSet | None, cfg, ctx: RunContext, photo: bool,
                       skip_log: SkipLog | None = None) -> PseudoLabels:
    """k-means of `model`'s embeddings of the readable unlabeled images (cfg: the run's config)."""
    if unlabeled is None:
        raise ValueError("the benchmark has no unlabeled set (data.unlabeled_root) to pseudo-label")
    check_cluster_count(cfg.pseudo.k, len(unlabeled))
    embeddings, _, indices = embed(model, unlabeled, eval_transform(cfg.data, photo), ctx, cfg.eval.batch_size,
                                   skip_log=skip_log)
    labels = None
    if ctx.ranks.main:  # k-means once; every rank gets its assignment
        labels = cluster(embeddings.numpy(), cfg.pseudo.k, seed=ctx.seed, iterations=cfg.pseudo.iterations,
                         gpu=cfg.pseudo.gpu)
    labels = ctx.ranks.broadcast(labels)
    indices = indices.numpy()
    hidden = unlabeled.hidden_labels[indices] if unlabeled.hidden_labels is not None else None
    return PseudoLabels(labels, indices, quality(labels, cfg.pseudo.k, hidden))


def pseudo_label(cfg, bench: Benchmark, ctx: RunContext, out: Path, teacher_weights: dict) -> StageResult:
    """The stage: the teacher's pseudo labels in out/pseudo_labels.pt, their quality in the result's metrics and in
    out/quality.json; unreadable unlabeled images are reported with their paths and left out."""
    began = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(ctx.device)
    model.load_state_dict(teacher_weights)
    skip_log = SkipLog()
    pseudo = make_pseudo_labels(model, bench.unlabeled, cfg, ctx, bench.photo, skip_log)
    if ctx.ranks.main:
        save_pseudo_labels(pseudo, out)
        (out / "quality.json").write_text(json.dumps(pseudo.quality, indent=2), encoding="utf-8")
        skip_log.report("pseudo labels")
    return StageResult("pseudo_labels", out, round(time.time() - began, 1), metrics=pseudo.quality,
                       skipped=skip_log.paths()).save(ctx.ranks)
