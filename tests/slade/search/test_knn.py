"""Exact kNN search: never a point's own neighbour (ties included), chunked so memory stays bounded, and a faiss
report that says where the search runs."""
import numpy as np
import pytest

from slade.search import backend as faiss_backend
from slade.search import knn as knn_module
from slade.search.knn import knn
from helpers.retrieval import random_set


def test_self_is_dropped_even_among_duplicates():
    x = np.repeat(np.eye(3, dtype=np.float32), 3, axis=0)  # three copies of each point: all ties
    idx, _ = knn(x, None, 2)
    assert not (idx == np.arange(9)[:, None]).any()
    assert (idx // 3 == np.arange(9)[:, None] // 3).all()


def test_faiss_report_says_where_it_runs():
    report = faiss_backend.faiss_report()
    assert set(report) >= {"faiss", "distribution", "gpu_build", "gpus_visible", "uses_gpu"}
    assert report["uses_gpu"] == (report["gpus_visible"] > 0)
    if report["gpus_visible"] == 0:
        with pytest.warns(UserWarning, match="faiss GPU requested but unavailable"):
            assert faiss_backend.want_gpu(True) is False
    assert faiss_backend.want_gpu(False) is False


def test_search_is_chunked(monkeypatch):
    """Memory per step is bounded by the chunk: faiss gets `chunk` queries at a time; the torch path shrinks the
    chunk further so that chunk x N similarities stay under its block budget."""
    from slade.search.knn import knn_chunks

    x, _ = random_set(n=100)
    assert [len(idx) for _, idx, _ in knn_chunks(x, None, 3, chunk=32)] == [32, 32, 32, 4]
    monkeypatch.setattr(knn_module, "TORCH_BLOCK_ELEMENTS", 100 * 10)
    parts = list(knn_chunks(x, None, 3, chunk=32, backend="torch"))
    assert [start for start, _, _ in parts] == list(range(0, 100, 10))
    assert all(idx.shape == (10, 3) for _, idx, _ in parts)
