"""Pseudo labels: the k > n refusal, the torch k-means fallback (one warning; it finds well-separated clusters as
faiss does), purity / NMI against scikit-learn, and the stage on a tiny glyph set."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from slade.stages import pseudo_labels
from slade.evaluation.metrics import nmi, purity
from slade.data.benchmark import build_benchmark
from slade.models import build_model
from slade.stages.teacher import eval_transform
from slade.search import backend as backend_module, kmeans as kmeans_module
from slade.search.kmeans import torch_kmeans
from helpers.configs import tiny_selftrain_config


def blobs(k=5, per=20, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + rng.normal(size=(len(labels), d))).astype(np.float32), labels


def test_more_clusters_than_images_is_refused():
    x, _ = blobs(k=2, per=3)
    with pytest.raises(ValueError, match=r"pseudo.k=7 clusters but the unlabeled set has only 6"):
        pseudo_labels.cluster(x, 7)
    with pytest.raises(ValueError, match="pseudo.k must be positive"):
        pseudo_labels.cluster(x, 0)


def test_stage_refuses_before_embedding(tmp_path):
    cfg = tiny_selftrain_config(tmp_path)
    bench = build_benchmark(cfg.data)
    cfg.pseudo.k = len(bench.unlabeled) + 1
    model = build_model(cfg.model, 1, cfg.data.image_size)
    with pytest.raises(ValueError, match=rf"pseudo.k={cfg.pseudo.k} clusters but the unlabeled set has only "
                                         rf"{len(bench.unlabeled)}"):
        pseudo_labels.make_pseudo_labels(model, bench.unlabeled, eval_transform(cfg, False), torch.device("cpu"),
                                         cfg.pseudo, cfg.eval, seed=0, progress=False)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_separated_clusters_are_recovered(backend, monkeypatch):
    x, truth = blobs()
    if backend == "torch":
        monkeypatch.setattr(kmeans_module, "load_faiss", lambda: None)
        monkeypatch.setattr(backend_module, "_FALLBACK_WARNED", set())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch fallback's warning has a test of its own
        ids = pseudo_labels.cluster(x, 5, seed=3, gpu=False)
    assert ids.shape == (100,) and ids.dtype == np.int64
    assert purity(ids, truth) == 1.0 and nmi(ids, truth) == pytest.approx(1.0)


def test_torch_fallback_warns_once_and_is_deterministic(monkeypatch):
    monkeypatch.setattr(kmeans_module, "load_faiss", lambda: None)
    monkeypatch.setattr(backend_module, "_FALLBACK_WARNED", set())
    x, _ = blobs(k=4, per=10, seed=1)
    with pytest.warns(UserWarning, match="faiss is not installed"):
        first = pseudo_labels.cluster(x, 6, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = pseudo_labels.cluster(x, 6, seed=0)
    assert np.array_equal(first, again)
    assert len(np.unique(first)) == 6  # no cluster left empty


def test_torch_kmeans_survives_coincident_points():
    ids = torch_kmeans(np.zeros((10, 3), dtype=np.float32), 4, seed=0, iterations=5)
    assert ids.shape == (10,) and set(ids.tolist()) <= set(range(4))
    with pytest.raises(ValueError, match="k must be between 1 and the number of points 10"):
        torch_kmeans(np.zeros((10, 3), dtype=np.float32), 11)


def test_purity_and_nmi_match_scikit_learn():
    rng = np.random.default_rng(0)
    clusters, classes = rng.integers(0, 7, 200), rng.integers(0, 5, 200)
    assert nmi(clusters, classes) == pytest.approx(normalized_mutual_info_score(classes, clusters))
    table = np.zeros((7, 5), dtype=int)
    np.add.at(table, (clusters, classes), 1)
    assert purity(clusters, classes) == pytest.approx(table.max(1).sum() / 200)
    assert purity([0, 0, 1, 1], [5, 5, 6, 7]) == 0.75
    with pytest.raises(ValueError, match="same length"):
        nmi([0, 1], [0])


def test_stage_labels_every_readable_image_and_logs_quality(tmp_path):
    cfg = tiny_selftrain_config(tmp_path)
    bench = build_benchmark(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, 1, cfg.data.image_size)
    pseudo = pseudo_labels.make_pseudo_labels(model, bench.unlabeled, eval_transform(cfg, False),
                                              torch.device("cpu"), cfg.pseudo, cfg.eval, seed=0, progress=False)
    n = len(bench.unlabeled)
    assert np.array_equal(pseudo.indices, np.arange(n)) and pseudo.labels.min() >= 0
    q = pseudo.quality
    assert q["k"] == cfg.pseudo.k and q["n"] == n and sum(q["sizes"]) == n
    hidden = bench.unlabeled.hidden_labels
    assert q["purity"] == purity(pseudo.labels, hidden) and q["nmi"] == nmi(pseudo.labels, hidden)
    pseudo_labels.save(pseudo, tmp_path / "p")
    back = pseudo_labels.load(tmp_path / "p")
    assert np.array_equal(back.labels, pseudo.labels) and back.quality == q
