"""Exact inner-product k nearest neighbours (cosine on L2-normalised embeddings), in query chunks so that a
100k x 100k search never holds more than chunk x k results (plus chunk x N similarities on the torch path).
faiss when installed (GPU index when a GPU faiss sees a GPU); otherwise pure torch, with one warning."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from slade.search.backend import gpu_count, load_faiss, warn_fallback

GPU_MAX_K = 2048  # faiss GPU flat search limit on k
TORCH_BLOCK_ELEMENTS = 1 << 25  # query-chunk x reference similarities held at once on the torch path (128 MiB)
def _as_matrix(x, arg: str) -> np.ndarray:
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{arg} must be 2-D [N, d], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{arg} contains NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def _faiss_searcher(faiss, reference: np.ndarray, k: int):
    index = faiss.IndexFlatIP(reference.shape[1])
    if k <= GPU_MAX_K and gpu_count() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(reference)
    return lambda q: index.search(q, k)


def _torch_searcher(reference: np.ndarray, k: int):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref = torch.from_numpy(reference).to(device)

    def search(q: np.ndarray):
        sims, idx = torch.topk(torch.from_numpy(q).to(device) @ ref.T, k, dim=1)
        return sims.cpu().numpy(), idx.cpu().numpy()

    return search


def _drop_self(idx: np.ndarray, sims: np.ndarray, rows: np.ndarray, k: int):
    """Remove each query's own index from its k+1 neighbours (or the last one when ties pushed it out)."""
    is_self = idx == rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return idx[keep].reshape(len(rows), k), sims[keep].reshape(len(rows), k)


def knn_chunks(query, reference=None, k: int = 10, chunk: int = 4096, backend: str = "auto",
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yields (first query row, neighbour indices [c, k] int64, similarities [c, k] float32), best first.
    reference=None searches the query set itself, leave-one-out (a point is never its own neighbour)."""
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    q = _as_matrix(query, "query")
    leave_one_out = reference is None
    ref = q if leave_one_out else _as_matrix(reference, "reference")
    if ref.shape[1] != q.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]} but reference has {ref.shape[1]}")
    available = len(ref) - int(leave_one_out)
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available} (reference size{' - 1' if leave_one_out else ''}), "
                         f"got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    faiss = load_faiss() if backend != "torch" else None
    if faiss is None and backend == "faiss":
        raise ImportError("backend='faiss' but faiss is not installed")
    search_k = k + int(leave_one_out)
    if faiss is not None:
        search = _faiss_searcher(faiss, ref, search_k)
    else:
        if backend == "auto":
            warn_fallback("kNN")
        search = _torch_searcher(ref, search_k)
        chunk = max(1, min(chunk, TORCH_BLOCK_ELEMENTS // max(1, len(ref))))
    for start in range(0, len(q), chunk):
        sims, idx = search(q[start:start + chunk])
        idx = idx.astype(np.int64)
        if leave_one_out:
            idx, sims = _drop_self(idx, sims, np.arange(start, start + len(idx)), k)
        yield start, idx, sims


def knn(query, reference=None, k: int = 10, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """All neighbours at once (indices, similarities); for small k. Large searches should iterate knn_chunks."""
    parts = list(knn_chunks(query, reference, k, **kwargs))
    if not parts:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
