"""The pseudo-label stage: the k > n refusal, and the stage on a tiny glyph set (every readable image labeled,
quality logged, labels saved and read back, unreadable images reported by path)."""
import numpy as np
import pytest
import torch

from slade.data.pseudo_labels import load_pseudo_labels
from slade.stages import pseudo_labels
from slade.evaluation.metrics import nmi, purity
from slade.data.benchmark import build_benchmark
from slade.models import build_model
from helpers.configs import quiet_context, tiny_selftrain_config


def test_more_clusters_than_images_is_refused():
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
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
        pseudo_labels.make_pseudo_labels(model, bench.unlabeled, cfg, quiet_context(cfg), photo=False)


def test_stage_labels_every_readable_image_and_logs_quality(tmp_path):
    cfg = tiny_selftrain_config(tmp_path)
    bench = build_benchmark(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, 1, cfg.data.image_size)
    pseudo = pseudo_labels.make_pseudo_labels(model, bench.unlabeled, cfg, quiet_context(cfg), photo=False)
    n = len(bench.unlabeled)
    assert np.array_equal(pseudo.indices, np.arange(n)) and pseudo.labels.min() >= 0
    q = pseudo.quality
    assert q["k"] == cfg.pseudo.k and q["n"] == n and sum(q["sizes"]) == n
    hidden = bench.unlabeled.hidden_labels
    assert q["purity"] == purity(pseudo.labels, hidden) and q["nmi"] == nmi(pseudo.labels, hidden)
    result = pseudo_labels.pseudo_label(cfg, bench, quiet_context(cfg), tmp_path / "p", model.state_dict())
    back = load_pseudo_labels(tmp_path / "p")
    assert np.array_equal(back.labels, pseudo.labels) and back.quality == q == result.metrics
    assert result.stage == "pseudo_labels" and result.skipped == {}
