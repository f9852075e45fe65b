"""How well pseudo labels match hidden true classes: purity and NMI (arithmetic normalisation, as scikit-learn's
default), in numpy so that the training layer does not need scikit-learn. For logs only, never for training."""
from __future__ import annotations

import numpy as np


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


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
    """Mutual information / mean of the two entropies; 1.0 when both labelings are a single group."""
    table = _contingency(*_check(clusters, classes)).astype(np.float64)
    h_a, h_b = _entropy(table.sum(1)), _entropy(table.sum(0))
    if h_a == 0.0 and h_b == 0.0:
        return 1.0
    p = table / table.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    mutual = float((p[nz] * np.log(p[nz] / outer[nz])).sum())
    return max(0.0, mutual / ((h_a + h_b) / 2))
