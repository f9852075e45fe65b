"""Purity and NMI of pseudo labels against hidden classes (logged, never trained on)."""
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from slade.evaluation.metrics import nmi, purity


def test_purity_against_a_hand_count_and_nmi_is_scikit_learns():
    rng = np.random.default_rng(0)
    clusters, classes = rng.integers(0, 7, 200), rng.integers(0, 5, 200)
    assert nmi(clusters, classes) == pytest.approx(normalized_mutual_info_score(classes, clusters))
    table = np.zeros((7, 5), dtype=int)
    np.add.at(table, (clusters, classes), 1)
    assert purity(clusters, classes) == pytest.approx(table.max(1).sum() / 200)
    assert purity([0, 0, 1, 1], [5, 5, 6, 7]) == 0.75
    with pytest.raises(ValueError, match="same length"):
        nmi([0, 1], [0])
