"""Retrieval metrics against brute force and pytorch-metric-learning, through either kNN backend; clustering metrics;
the evaluation of a model on a query -> gallery benchmark."""
import warnings

import numpy as np
import pytest
import torch

from slade.search import backend as faiss_backend
from slade.search import knn as knn_module
from slade.evaluation.metrics import clustering_metrics, retrieval_metrics
from slade.search.knn import knn
from helpers.retrieval import random_set


def brute_force(query, q_labels, reference=None, r_labels=None, ks=(1, 2, 5)):
    """Textbook definitions from a full sort of every similarity row."""
    loo = reference is None
    if loo:
        reference, r_labels = query, q_labels
    sims = query @ reference.T
    if loo:
        np.fill_diagonal(sims, -np.inf)
    out = {k: [] for k in ("map_at_r", "r_precision", "precision_at_1", *[f"recall_at_{k}" for k in ks])}
    for i in range(len(query)):
        order = np.argsort(-sims[i], kind="stable")
        if loo:
            order = order[order != i]
        rel = r_labels[order] == q_labels[i]
        r = int(rel.sum())
        if r == 0:
            continue
        precisions = [rel[: j + 1].sum() / (j + 1) for j in range(r) if rel[j]]
        out["map_at_r"].append(sum(precisions) / r)
        out["r_precision"].append(rel[:r].sum() / r)
        out["precision_at_1"].append(float(rel[0]))
        for k in ks:
            out[f"recall_at_{k}"].append(float(rel[:k].any()))
    return {name: float(np.mean(v)) for name, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_leave_one_out_matches_brute_force(seed):
    x, y = random_set(seed=seed)
    y[0] = 99  # a singleton class: no relevant item, left out as in PML
    got = retrieval_metrics(x, y, recall_ks=(1, 2, 5))
    want = brute_force(x, y, ks=(1, 2, 5))
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
    assert got["num_queries"] == len(x) - 1


def test_query_gallery_matches_brute_force():
    x, y = random_set(n=150, seed=2)
    got = retrieval_metrics(x[:50], y[:50], x[50:], y[50:], recall_ks=(1, 2, 5))
    want = brute_force(x[:50], y[:50], x[50:], y[50:], ks=(1, 2, 5))
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_matches_pytorch_metric_learning_accuracy_calculator():
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    x, y = random_set(n=200, classes=12, seed=3)
    pml = AccuracyCalculator(include=("mean_average_precision_at_r", "r_precision", "precision_at_1"),
                             k="max_bin_count", knn_func=CustomKNN(CosineSimilarity())
                             ).get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
    ours = retrieval_metrics(x, y)
    assert ours["map_at_r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)
    assert ours["precision_at_1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)


def test_chunking_and_backends_agree():
    x, y = random_set(n=90, seed=4)
    full = retrieval_metrics(x, y, recall_ks=(1, 4))
    assert retrieval_metrics(x, y, recall_ks=(1, 4), chunk=7) == pytest.approx(full, abs=1e-12)
    assert retrieval_metrics(x, y, recall_ks=(1, 4), chunk=7, backend="torch") == pytest.approx(full)
    idx_faiss, sims_faiss = knn(x, None, 5)
    idx_torch, sims_torch = knn(x, None, 5, backend="torch", chunk=11)
    np.testing.assert_array_equal(idx_faiss, idx_torch)
    np.testing.assert_allclose(sims_faiss, sims_torch, atol=1e-5)
    assert not (idx_faiss == np.arange(len(x))[:, None]).any()  # never its own neighbour


def test_torch_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(knn_module, "load_faiss", lambda: None)
    monkeypatch.setattr(faiss_backend, "_FALLBACK_WARNED", set())
    x, y = random_set(n=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = retrieval_metrics(x, y)
        retrieval_metrics(x, y)
    assert sum("faiss is not installed" in str(w.message) for w in caught) == 1
    monkeypatch.undo()
    assert retrieval_metrics(x, y) == pytest.approx(first)


def test_bad_inputs_are_named():
    x, y = random_set(n=20)
    with pytest.raises(ValueError, match="query_labels"):
        retrieval_metrics(x, y[:5])
    with pytest.raises(ValueError, match="reference_labels"):
        retrieval_metrics(x, y, x)
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="k must be"):
        knn(x, None, 20)
    with pytest.raises(ValueError, match="backend"):
        knn(x, None, 2, backend="annoy")


def test_clustering_metrics_on_separated_and_random_data():
    x, y = random_set(n=90, classes=3, seed=5)
    separated = np.concatenate([x, 20.0 * np.eye(8, dtype=np.float32)[y]], axis=1)
    perfect = clustering_metrics(separated, y)
    assert perfect["nmi"] == pytest.approx(1.0) and perfect["ami"] == pytest.approx(1.0)
    noise = clustering_metrics(np.random.default_rng(0).normal(size=(90, 8)).astype(np.float32), y)
    assert noise["ami"] < 0.2


def test_model_evaluation_on_query_gallery_benchmark(tmp_path):
    """In-shop style: the test role searches the gallery with the queries, and the grid shows gallery images."""
    from PIL import Image

    from slade import config
    from slade.data.imageset import ImageSet
    from slade.data.benchmark import Benchmark
    from slade.models import build_model
    from slade.runtime.context import RunContext
    from slade.evaluation.retrieval import evaluate_role
    from slade.evaluation.grid import save_retrieval_grid

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (30, 16, 16), dtype=np.uint8)
    labels = np.arange(30) % 6
    gallery = ImageSet(labels=labels[6:], class_names=list("abcdef"), arrays=arrays[6:], name="gallery")
    query = ImageSet(labels=labels[:6], class_names=list("abcdef"), arrays=arrays[:6], name="query")
    bench = Benchmark(name="shop", labeled=gallery, query=query, gallery=gallery, photo=False)
    torch.manual_seed(0)
    cfg = config.Config()
    cfg.model.width, cfg.model.embedding_dim, cfg.data.image_size, cfg.eval.recall_ks = 4, 8, 16, [1, 4]
    model = build_model(cfg.model, 1, 16)
    ctx = RunContext.from_config(cfg, progress=False)
    result = evaluate_role(model, bench, "test", cfg, ctx)
    assert result.reference is not None and result.metrics["num_queries"] == 6
    emb_q, emb_g = result.query.embeddings.numpy(), result.reference.embeddings.numpy()
    assert result.metrics == pytest.approx(retrieval_metrics(emb_q, labels[:6], emb_g, labels[6:], (1, 4)))
    save_retrieval_grid(result, tmp_path / "grid.png", n_queries=3, top=5)
    assert Image.open(tmp_path / "grid.png").size == (72 * 6 + 12, 72 * 3)
    with pytest.raises(ValueError, match="role"):
        evaluate_role(model, bench, "train", cfg, ctx)
