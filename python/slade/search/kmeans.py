"""k-means with nearest-centroid assignment: faiss when installed (on the GPU when asked and visible), else plain
torch (k-means++ seeding, Lloyd iterations, L2 like faiss.Kmeans; on CUDA when available), with one warning.
Deterministic for a seed."""
from __future__ import annotations

import numpy as np
import torch

from slade.search.backend import gpu_count, load_faiss, want_gpu, warn_fallback

CHUNK = 8192  # rows whose distances to all centroids are held at once


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance to, index of) the nearest centroid of every row, chunked over rows."""
    c_norm = (centroids * centroids).sum(1)
    dists, ids = [], []
    for start in range(0, len(x), CHUNK):
        part = x[start:start + CHUNK]
        d = (part * part).sum(1, keepdim=True) - 2 * part @ centroids.T + c_norm
        best = d.min(1)
        dists.append(best.values.clamp_min(0))
        ids.append(best.indices)
    return torch.cat(dists), torch.cat(ids)


def _plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    centroids = x[torch.randint(len(x), (1,), generator=generator, device=x.device)]
    nearest = _nearest(x, centroids)[0]
    for _ in range(1, k):
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)  # all points coincide: uniform
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, x[pick]])
        nearest = torch.minimum(nearest, _nearest(x, x[pick])[0])
    return centroids


def torch_kmeans(x, k: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Cluster id (nearest final centroid) of each row of x [N, d]. A cluster emptied during the iterations takes
    over the point that is farthest from its own centroid, so that clusters do not die out."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [N, d], got shape {tuple(x.shape)}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the number of points {len(x)}, got {k}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    centroids = _plus_plus(x, k, generator)
    for _ in range(iterations):
        dist, ids = _nearest(x, centroids)
        counts = torch.bincount(ids, minlength=k)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.argmax())
            ids[far], dist[far] = empty, 0.0
        counts = torch.bincount(ids, minlength=k).clamp_min(1).to(x.dtype)
        centroids = torch.zeros_like(centroids).index_add_(0, ids, x) / counts[:, None]
    return _nearest(x, centroids)[1].cpu().numpy().astype(np.int64)


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
