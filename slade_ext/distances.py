"""The fused ops' distance options by name: pytorch-metric-learning's distances that the kernels compute.

    "cosine"                     CosineSimilarity(), the same matrix as DotProductSimilarity()
    "dot"                        DotProductSimilarity(normalize_embeddings=False)
    "l2", "l2sq"                 LpDistance(), power=1 / power=2
    "euclidean", "sqeuclidean"   LpDistance(normalize_embeddings=False), power=1 / power=2

`dense_matrix` computes one as PML does (the kernels tile the same computation, csrc/common/checks.cpp).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# name -> (rows normalised first, a similarity (larger is closer) rather than a distance, power)
DISTANCES = {
    "cosine": (True, True, 1),
    "dot": (False, True, 1),
    "l2": (True, False, 1),
    "l2sq": (True, False, 2),
    "euclidean": (False, False, 1),
    "sqeuclidean": (False, False, 2),
}


def check_distance(name: str) -> str:
    if name not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(map(repr, DISTANCES))}; got {name!r}")
    return name


def is_inverted(name: str) -> bool:
    """Whether larger values are closer, as PML's distance.is_inverted."""
    return DISTANCES[check_distance(name)][1]


def name_of(normalize: bool, similarity: bool, power) -> str | None:
    """The name of a distance with these settings, or None when the kernels have none."""
    for name, settings in DISTANCES.items():
        if settings == (bool(normalize), bool(similarity), power):
            return name
    return None


def dense_matrix(x: torch.Tensor, y: torch.Tensor, name: str) -> torch.Tensor:
    """The full matrix of the distance between the rows of x and of y, computed as PML computes it: dot products
    or torch.cdist (to the power), of the rows normalised or not. Half inputs are compared in float32."""
    normalise, similarity, power = DISTANCES[check_distance(name)]
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    if normalise:
        x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return x @ y.T if similarity else torch.cdist(x, y) ** power
