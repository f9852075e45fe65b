"""k-means with nearest-centroid assignment: faiss when installed (on the GPU when asked and visible), else plain
torch (slade_ext.evaluation.KMeans), with one warning. Deterministic for a seed."""
from __future__ import annotations

import numpy as np
import torch

from slade_ext.evaluation import KMeans

from slade.search.backend import gpu_count, load_faiss, want_gpu, warn_fallback


def torch_kmeans(x, k: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Cluster id of each row of x [N, d] by slade_ext.evaluation.KMeans's torch k-means (k-means++ seeding, Lloyd
    iterations, a cluster emptied on the way takes over the point farthest from its centroid), on CUDA when
    available."""
    x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return KMeans(niter=iterations, seed=seed, device=device, backend="torch")(x, k).cpu().numpy().astype(np.int64)


def kmeans_assign(x, k: int, seed: int = 0, iterations: int = 20, gpu: bool = False) -> np.ndarray:
    """Cluster id of each row of x [N, d]: the one k-means of the training layer (pseudo labels, NMI/AMI)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [N, d], got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the number of points {len(x)}, got {k}")
    faiss = load_faiss()
    if faiss is None:
        warn_fallback("k-means")
        return torch_kmeans(x, k, seed=seed, iterations=iterations)
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, gpu=want_gpu(gpu and gpu_count() > 0),
                      verbose=False, min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0].astype(np.int64)
