"""Confident-pair selection equals the reference in both modes; its documented rules hold."""
import pytest
import torch

from helpers.op_cases import assert_same_indices, embeddings, labels, with_ties
from slade_ext import ops, reference


@pytest.mark.parametrize("n", [1, 2, 31, 150])
@pytest.mark.parametrize("mode", ["literal", "agree"])
@pytest.mark.parametrize("thresholds", [(0.5, -0.2), (0.1, 0.0), (0.9, -0.9)])
def test_selection_equals_reference(n, mode, thresholds):
    emb, w = embeddings(n), embeddings(6, seed=7)
    pseudo = labels(n, 4) - (torch.arange(n) % 7 == 0).long() * 10  # some -> negative (no pseudo label)
    pseudo = pseudo.clamp(min=-1)
    got = ops.select_confident_pairs(emb, w, *thresholds, pseudo_labels=pseudo, mode=mode)
    want = reference.select_confident_pairs(emb, w, *thresholds, pseudo_labels=pseudo, mode=mode)
    assert_same_indices(got, want)


def test_selection_nothing_while_thresholds_overlap():
    emb, w = embeddings(20), embeddings(6, seed=7)
    got = ops.select_confident_pairs(emb, w, t_pos=0.1, t_neg=0.2)
    assert all(t.numel() == 0 for t in got)


def test_selection_never_pairs_a_sample_with_itself_and_ties_are_inclusive():
    emb, w = with_ties(embeddings(10)), embeddings(6, seed=7)
    a1, p, a2, n = ops.select_confident_pairs(emb, w, t_pos=0.9999, t_neg=-2.0)
    assert not torch.any(a1 == p)
    # Duplicated rows have similarity 1 (up to rounding), so each duplicate pair is a positive both ways.
    assert {(int(i), int(j)) for i, j in zip(a1, p)} >= {(0, 5), (5, 0)}
    assert a2.numel() == 0


def test_agree_mode_respects_pseudo_labels():
    emb, w = embeddings(40), embeddings(6, seed=7)
    pseudo = labels(40, 3)
    pseudo[:5] = -1
    a1, p, a2, n = ops.select_confident_pairs(emb, w, 0.2, -0.2, pseudo_labels=pseudo, mode="agree")
    assert torch.all(pseudo[a1] == pseudo[p]) and torch.all(pseudo[a1] >= 0)
    assert torch.all(pseudo[a2] != pseudo[n]) and torch.all(pseudo[a2] >= 0) and torch.all(pseudo[n] >= 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_selection_half_inputs(dtype):
    emb, w = embeddings(50, dtype=dtype), embeddings(6, seed=7, dtype=dtype)
    got = ops.select_confident_pairs(emb, w, 0.3, -0.3)
    assert_same_indices(got, reference.select_confident_pairs(emb, w, 0.3, -0.3))
