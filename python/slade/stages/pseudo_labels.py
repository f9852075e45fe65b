"""Stage 3 of SLADE (METHOD.md): the teacher embeds the unlabeled set (eval transform, L2-normalised), k-means
(faiss, on the GPU when one is visible; plain torch when faiss is missing) clusters it, and each image takes the id of
its nearest centroid. Cluster sizes are logged, and purity / NMI against the hidden true classes where the
benchmark knows them (glyphs): those are never used for training."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slade.runtime import checkpoint
from slade.evaluation.metrics import nmi, purity
from slade.data.imageset import ImageSet
from slade.evaluation.embedding import embed
from slade.search.kmeans import kmeans_assign

@dataclass
class PseudoLabels:
    labels: np.ndarray  # [N'] cluster id of each readable unlabeled image
    indices: np.ndarray  # [N'] their positions in the unlabeled ImageSet
    quality: dict = field(default_factory=dict)

    def state(self) -> dict:
        return {"labels": torch.from_numpy(self.labels), "indices": torch.from_numpy(self.indices),
                "quality": self.quality}

    @classmethod
    def from_state(cls, state: dict) -> "PseudoLabels":
        return cls(state["labels"].numpy(), state["indices"].numpy(), state["quality"])


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


def make_pseudo_labels(model, unlabeled: ImageSet | None, transform, device, pseudo_cfg, eval_cfg, seed: int,
                       amp: bool = False, skip_log=None, progress: bool = True) -> PseudoLabels:
    """pseudo_cfg: config.PseudoLabelConfig; eval_cfg: config.EvalConfig (embedding batch size)."""
    if unlabeled is None:
        raise ValueError("the benchmark has no unlabeled set (data.unlabeled_root) to pseudo-label")
    check_cluster_count(pseudo_cfg.k, len(unlabeled))
    embeddings, _, indices = embed(model, unlabeled, transform, device, eval_cfg.batch_size, amp=amp,
                                   skip_log=skip_log, role="unlabeled", progress=progress)
    labels = cluster(embeddings.numpy(), pseudo_cfg.k, seed=seed, iterations=pseudo_cfg.iterations, gpu=pseudo_cfg.gpu)
    indices = indices.numpy()
    hidden = unlabeled.hidden_labels[indices] if unlabeled.hidden_labels is not None else None
    return PseudoLabels(labels, indices, quality(labels, pseudo_cfg.k, hidden))


def save(pseudo: PseudoLabels, out: Path) -> None:
    """out/pseudo_labels.pt (the labels) and out/quality.json (for people)."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_atomic(pseudo.state(), out / "pseudo_labels.pt")
    (out / "quality.json").write_text(json.dumps(pseudo.quality, indent=2), encoding="utf-8")


def load(out: Path) -> PseudoLabels:
    return PseudoLabels.from_state(checkpoint.load(out / "pseudo_labels.pt"))
