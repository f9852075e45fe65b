"""k-means: faiss or the torch fallback (one warning) finds well-separated clusters, deterministically for a seed,
and survives coincident points."""
import warnings

import numpy as np
import pytest

from slade.evaluation.metrics import nmi, purity
from slade.search import backend as backend_module, kmeans as kmeans_module
from slade.search.kmeans import kmeans_assign, torch_kmeans


def blobs(k=5, per=20, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + rng.normal(size=(len(labels), d))).astype(np.float32), labels


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_separated_clusters_are_recovered(backend, monkeypatch):
    x, truth = blobs()
    if backend == "torch":
        monkeypatch.setattr(kmeans_module, "load_faiss", lambda: None)
        monkeypatch.setattr(backend_module, "_FALLBACK_WARNED", set())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch fallback's warning has a test of its own
        ids = kmeans_assign(x, 5, seed=3, gpu=False)
    assert ids.shape == (100,) and ids.dtype == np.int64
    assert purity(ids, truth) == 1.0 and nmi(ids, truth) == pytest.approx(1.0)


def test_torch_fallback_warns_once_and_is_deterministic(monkeypatch):
    monkeypatch.setattr(kmeans_module, "load_faiss", lambda: None)
    monkeypatch.setattr(backend_module, "_FALLBACK_WARNED", set())
    x, _ = blobs(k=4, per=10, seed=1)
    with pytest.warns(UserWarning, match="faiss is not installed"):
        first = kmeans_assign(x, 6, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = kmeans_assign(x, 6, seed=0)
    assert np.array_equal(first, again)
    assert len(np.unique(first)) == 6  # no cluster left empty


def test_torch_kmeans_survives_coincident_points():
    ids = torch_kmeans(np.zeros((10, 3), dtype=np.float32), 4, seed=0, iterations=5)
    assert ids.shape == (10,) and set(ids.tolist()) <= set(range(4))
    with pytest.raises(ValueError, match=r"nmb_clusters must be between 1 and 10"):
        torch_kmeans(np.zeros((10, 3), dtype=np.float32), 11)
    with pytest.raises(ValueError, match="k must be between 1 and the number of points 10"):
        kmeans_assign(np.zeros((10, 3), dtype=np.float32), 11)
