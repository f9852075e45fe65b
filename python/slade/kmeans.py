"""k-means (faiss when installed, else scikit-learn): cluster ids of each row, deterministic for a seed."""
from __future__ import annotations

import numpy as np

from .faiss_backend import load_faiss, want_gpu


def kmeans_assign(x: np.ndarray, k: int, seed: int = 0, iterations: int = 20, gpu: bool = False) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [N, d], got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the number of points {len(x)}, got {k}")
    faiss = load_faiss()
    if faiss is None:
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=1, max_iter=iterations, random_state=seed).fit_predict(x).astype(np.int64)
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, gpu=want_gpu(gpu), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0].astype(np.int64)
