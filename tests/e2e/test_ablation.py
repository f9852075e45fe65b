"""The ablation harness (slade.pipeline.ablation) on a tiny glyph set: shared stages per seed, one student per
variant, later self-training rounds that cluster with the previous round's student, resumption, and the oracle
variant."""
import numpy as np
import pytest
import torch

from slade.data.pseudo_labels import PseudoLabels
from slade.pipeline.ablation import VARIANTS, oracle_pseudo_labels, run_seed
from helpers.configs import tiny_selftrain_config

PLAIN, BEST = "plain pseudo-label pairs", "+ basis + selection (agree, pseudo-label negatives)"


def test_variants_and_a_second_round(tmp_path):
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.train.epochs = 1
    variants = {name: VARIANTS[name] for name in (PLAIN, BEST)}
    result = run_seed(cfg, variants, "", progress=False, rounds=2)
    assert set(result) == {"teacher", "pseudo", "pairs", PLAIN, BEST, f"{PLAIN}, round 2", f"{BEST}, round 2"}
    assert set(result["pairs"]) == {PLAIN, BEST, f"{PLAIN}, round 2", f"{BEST}, round 2"}
    assert all(0.0 <= result[k]["map_at_r"] <= 1.0 for k in result if k not in ("pseudo", "pairs"))
    root = tmp_path / "run"
    round1 = torch.load(root / f"pseudo_k{cfg.pseudo.k}" / "pseudo_labels.pt")["labels"]
    round2 = torch.load(root / "basis_selection_agree_pseudo-label_negatives_round2" / "pseudo" /
                        "pseudo_labels.pt")["labels"]
    assert not torch.equal(round1, round2)  # round 2 clusters with round 1's student, not with the teacher
    assert result[BEST] != result[f"{BEST}, round 2"]

    again = run_seed(cfg, variants, "", progress=False, rounds=2)  # every stage finished: read back, not retrained
    assert again == result


def test_the_oracle_variant_trains_on_the_true_classes(tmp_path):
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.train.epochs = 1
    oracle = "oracle: best student, true classes as pseudo labels"
    result = run_seed(cfg, {name: VARIANTS[name] for name in (BEST, oracle)}, "", progress=False)
    pairs = result["pairs"][oracle]
    # every pair the oracle's student trained on is right about the hidden classes; the teacher's clusters are not
    assert pairs["pos_precision"] == 1.0 and pairs["neg_precision"] == 1.0
    assert result["pairs"][BEST]["pos_precision"] < 1.0
    kept = torch.load(tmp_path / "run" / f"pseudo_k{cfg.pseudo.k}" / "pseudo_labels.pt")["labels"]
    assert len(torch.unique(kept)) <= cfg.pseudo.k  # the teacher's clusters on disk are left as they were


def test_the_oracle_needs_hidden_classes():
    class NoClasses:
        hidden_labels = None

    with pytest.raises(ValueError, match="oracle"):
        oracle_pseudo_labels(PseudoLabels(np.zeros(3, np.int64), np.arange(3)), NoClasses())
