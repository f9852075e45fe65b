"""Retrieval metrics (MLRC protocol): MAP@R, R-Precision and P@1 leave-one-out within a set, Recall@K there or
query -> gallery, NMI/AMI of k-means clusters, and the purity / NMI of pseudo labels against hidden classes. Neighbours come in chunks (knn.knn_chunks), so memory grows
with chunk x R, never with N^2."""
from __future__ import annotations

import numpy as np

from slade.search.kmeans import kmeans_assign
from slade.search.knn import knn_chunks

DEFAULT_RECALL_KS = (1, 10, 20, 40)
# The headline metrics of every table and plot: (key, label).
HEADLINE = (("map_at_r", "MAP@R"), ("r_precision", "RP"), ("precision_at_1", "P@1"))


def _labels(labels, n: int, arg: str) -> np.ndarray:
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.int64)
    if labels.shape != (n,):
        raise ValueError(f"{arg} must have shape ({n},), got {labels.shape}")
    return labels


def _relevant_counts(query_labels, reference_labels, leave_one_out: bool) -> np.ndarray:
    """R of each query: how many reference items share its label (itself excluded when leave-one-out)."""
    classes, counts = np.unique(reference_labels, return_counts=True)
    pos = np.searchsorted(classes, query_labels).clip(max=len(classes) - 1)
    r = np.where(classes[pos] == query_labels, counts[pos], 0)
    return r - int(leave_one_out)


class _Accumulator:
    """Sums per-query scores over chunks; queries without any relevant item (R = 0) are left out, as in PML."""

    def __init__(self, ks):
        self.ks = ks
        self.sums = {"map_at_r": 0.0, "r_precision": 0.0, "precision_at_1": 0.0, **{f"recall_at_{k}": 0.0 for k in ks}}
        self.count = 0

    def add(self, hits: np.ndarray, r: np.ndarray) -> None:
        """hits [c, K] bool (neighbour j has the query's label), r [c] relevant counts."""
        valid = r > 0
        hits, r = hits[valid], r[valid]
        if not len(r):
            return
        k_max = hits.shape[1]
        within_r = np.arange(k_max)[None, :] < r[:, None]
        at_r = hits & within_r
        precision = np.cumsum(at_r, axis=1) / np.arange(1, k_max + 1)
        self.sums["map_at_r"] += float(((precision * at_r).sum(axis=1) / r).sum())
        self.sums["r_precision"] += float((at_r.sum(axis=1) / r).sum())
        self.sums["precision_at_1"] += float(hits[:, 0].sum())
        for k in self.ks:
            self.sums[f"recall_at_{k}"] += float(hits[:, :k].any(axis=1).sum())
        self.count += len(r)

    def result(self) -> dict[str, float]:
        out = {name: total / self.count if self.count else float("nan") for name, total in self.sums.items()}
        out["num_queries"] = self.count
        return out


def retrieval_metrics(query, query_labels, reference=None, reference_labels=None, recall_ks=DEFAULT_RECALL_KS,
                      chunk: int = 4096, backend: str = "auto") -> dict[str, float]:
    """reference=None: leave-one-out within `query` (MAP@R / RP / P@1 of the MLRC protocol; Recall@K as in CUB/Cars
    papers). Otherwise query -> gallery (In-shop Recall@K). Embeddings should be L2-normalised (cosine)."""
    n_query = len(query)
    q_labels = _labels(query_labels, n_query, "query_labels")
    leave_one_out = reference is None
    if leave_one_out:
        r_labels = q_labels
    else:
        if reference_labels is None:
            raise ValueError("reference_labels is required with reference")
        r_labels = _labels(reference_labels, len(reference), "reference_labels")
    ks = tuple(sorted(set(int(k) for k in recall_ks)))
    if not ks or ks[0] < 1:
        raise ValueError(f"recall_ks must be positive integers, got {recall_ks}")
    r = _relevant_counts(q_labels, r_labels, leave_one_out)
    available = len(r_labels) - int(leave_one_out)
    k = min(available, max(int(r.max(initial=0)), ks[-1]))
    acc = _Accumulator(ks)
    if n_query and k > 0:
        for start, idx, _ in knn_chunks(query, reference, k, chunk=chunk, backend=backend):
            stop = start + len(idx)
            acc.add(r_labels[idx] == q_labels[start:stop, None], r[start:stop])
    return acc.result()


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _check(clusters, classes) -> tuple[np.ndarray, np.ndarray]:
    clusters, classes = np.asarray(clusters).ravel(), np.asarray(classes).ravel()
    if clusters.shape != classes.shape:
        raise ValueError(f"clusters ({clusters.shape[0]}) and classes ({classes.shape[0]}) must have the same length")
    if not len(clusters):
        raise ValueError("clusters is empty")
    return clusters, classes


def purity(clusters, classes) -> float:
    """Share of the items that belong to their cluster's majority class."""
    table = _contingency(*_check(clusters, classes))
    return float(table.max(axis=1).sum() / table.sum())


def nmi(clusters, classes) -> float:
    """Normalised mutual information (arithmetic mean of the entropies, scikit-learn's default)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(*_check(clusters, classes)))


def clustering_metrics(embeddings, labels, seed: int = 0) -> dict[str, float]:
    """NMI and AMI of k-means (k = number of classes) against the labels."""
    from sklearn.metrics import adjusted_mutual_info_score

    x = embeddings.detach().float().cpu().numpy() if hasattr(embeddings, "detach") else np.asarray(embeddings)
    y = _labels(labels, len(x), "labels")
    clusters = kmeans_assign(x, len(np.unique(y)), seed=seed)
    return {"nmi": nmi(y, clusters),
            "ami": float(adjusted_mutual_info_score(y, clusters))}
