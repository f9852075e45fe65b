"""The selection family: select_confident_pairs (docs/method.md) and ConfidentPairMiner.

On the CPU the op equals the reference in both modes; on CUDA it equals the CPU kernels on exact inputs
(tests/support/helpers/cuda_cases.py); its documented rules hold on every device.
"""
from __future__ import annotations

import pytest
import torch

from helpers.cuda_cases import (
    assert_indices_match,
    clustered,
    cuda_only,
    gaussian,
    sign_basis,
    sign_embeddings,
    skip_inexact_on_cuda,
)
from helpers.op_cases import assert_same_indices, embeddings, labels, with_ties
from slade_ext import miners, ops, reference
from slade_ext.basis import FeatureBasis


def assert_selection_matches(device, *args, **kwargs):
    return assert_indices_match(device, ops.select_confident_pairs, reference.select_confident_pairs, *args, **kwargs)


@pytest.mark.parametrize("n", [1, 2, 31, 150])
@pytest.mark.parametrize("mode", ["literal", "agree"])
@pytest.mark.parametrize("thresholds", [(0.5, -0.2), (0.1, 0.0), (0.9, -0.9)])
def test_selection_equals_reference(device, n, mode, thresholds):
    skip_inexact_on_cuda(device)
    emb, w = embeddings(n), embeddings(6, seed=7)
    pseudo = labels(n, 4) - (torch.arange(n) % 7 == 0).long() * 10  # some -> negative (no pseudo label)
    pseudo = pseudo.clamp(min=-1)
    assert_selection_matches(device, emb, w, *thresholds, pseudo_labels=pseudo, mode=mode)


@pytest.mark.parametrize("mode", ["literal", "agree"])
@pytest.mark.parametrize("n,n_classes", [(1, 1), (7, 3), (120, 2), (600, 7)])
def test_selection_matches_spec(device, n, n_classes, mode):
    pseudo = labels(n, n_classes + 1) - 1 if mode == "agree" else None  # agree: some -1 (unknown) labels
    for emb, basis, t_pos, t_neg in [
        (sign_embeddings(n, 64), sign_basis(16, 64), 0.3, -0.2),
        (gaussian(n), gaussian(6, seed=9), 0.5, -0.4),
    ]:
        assert_selection_matches(device, emb, basis, t_pos, t_neg, pseudo, mode)
    # Overlapping thresholds select nothing.
    got = assert_selection_matches(device, gaussian(n), gaussian(6, seed=9), 0.1, 0.2, pseudo, mode)
    assert all(t.numel() == 0 for t in got)


def test_selection_nothing_while_thresholds_overlap(device):
    emb, w = embeddings(20).to(device), embeddings(6, seed=7).to(device)
    got = ops.select_confident_pairs(emb, w, t_pos=0.1, t_neg=0.2)
    assert all(t.numel() == 0 and t.device.type == device for t in got)


def test_selection_never_pairs_a_sample_with_itself_and_ties_are_inclusive(device):
    emb, w = with_ties(embeddings(10)).to(device), embeddings(6, seed=7).to(device)
    a1, p, a2, n = ops.select_confident_pairs(emb, w, t_pos=0.9999, t_neg=-2.0)
    assert not torch.any(a1 == p)
    # Duplicated rows have similarity 1 (up to rounding), so each duplicate pair is a positive both ways.
    assert {(int(i), int(j)) for i, j in zip(a1, p)} >= {(0, 5), (5, 0)}
    assert a2.numel() == 0


def test_agree_mode_respects_pseudo_labels(device):
    emb, w = embeddings(40).to(device), embeddings(6, seed=7).to(device)
    pseudo = labels(40, 3)
    pseudo[:5] = -1
    pseudo = pseudo.to(device)
    a1, p, a2, n = ops.select_confident_pairs(emb, w, 0.2, -0.2, pseudo_labels=pseudo, mode="agree")
    assert torch.all(pseudo[a1] == pseudo[p]) and torch.all(pseudo[a1] >= 0)
    assert torch.all(pseudo[a2] != pseudo[n]) and torch.all(pseudo[a2] >= 0) and torch.all(pseudo[n] >= 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_selection_half_inputs(device, dtype):
    skip_inexact_on_cuda(device)
    emb, w = embeddings(50, dtype=dtype), embeddings(6, seed=7, dtype=dtype)
    assert_selection_matches(device, emb, w, 0.3, -0.3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_selection_half_sign_inputs_match_spec(device, dtype):
    emb, basis = sign_embeddings(200, 64, dtype=dtype), sign_basis(16, 64, dtype=dtype)
    assert_selection_matches(device, emb, basis, 0.3, -0.2, labels(200, 4) - 1, "agree")
    assert_selection_matches(device, emb, basis, 0.3, -0.2)


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_selection_spanning_several_cuda_tiles(device, mode):
    cuda_only(device)
    emb, lab, _, _ = clustered(10_000, None, 2000)
    pseudo = lab.clone()
    pseudo[::7] = -1
    basis = gaussian(8, seed=11)
    got = assert_indices_match(device, ops.select_confident_pairs, ops.select_confident_pairs, emb, basis, 0.99,
                               -0.9, pseudo if mode == "agree" else None, mode)
    assert got[0].numel() > 0 and got[2].numel() > 0


# ---- ConfidentPairMiner ----------------------------------------------------------------------------------------


def make_inputs(n, n_classes, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, n_classes, (n,), generator=g)


def assert_same_output(ours, theirs):
    assert len(ours) == len(theirs)
    for t in ours:
        assert t.dtype == torch.int64 and t.dim() == 1
    assert_same_indices([t.cpu() for t in ours], theirs)


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_confident_miner_equals_reference(device, mode):
    skip_inexact_on_cuda(device)
    emb, pseudo = make_inputs(70, 5)
    basis = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    ours = miners.ConfidentPairMiner(basis, t_pos=0.3, t_neg=-0.2, mode=mode)(emb, pseudo)
    expected = reference.select_confident_pairs(emb, basis, 0.3, -0.2, pseudo, mode)
    assert_same_output(ours, expected)
    assert len(ours[0]) > 0 and len(ours[2]) > 0


def test_confident_miner_from_feature_basis_thresholds(device):
    skip_inexact_on_cuda(device)
    emb, pseudo = make_inputs(60, 4)
    basis = FeatureBasis(num_classes=5, dim=16)
    miner = miners.ConfidentPairMiner(basis)
    assert all(len(t) == 0 for t in miner(emb, pseudo))  # no statistics yet: nothing is confident
    basis.sd_loss(emb, pseudo)
    t_pos, t_neg = basis.thresholds()
    expected = reference.select_confident_pairs(emb, basis.weight.detach(), t_pos, t_neg)
    assert_same_output(miner(emb, pseudo), expected)


def test_confident_miner_rejects_bad_arguments():
    with pytest.raises(ValueError, match="t_pos"):
        miners.ConfidentPairMiner(torch.randn(3, 4))
    with pytest.raises(ValueError, match="mode"):
        miners.ConfidentPairMiner(torch.randn(3, 4), 0.5, 0.1, mode="both")
    miner = miners.ConfidentPairMiner(torch.randn(3, 4), 0.5, 0.1, mode="agree")
    with pytest.raises(ValueError, match="labels"):
        miner(torch.randn(6, 4))
    with pytest.raises(ValueError, match="ref_emb"):
        miner(torch.randn(6, 4), torch.zeros(6, dtype=torch.long), torch.randn(6, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_veto_mode_keeps_every_pseudo_negative_the_basis_does_not_call_similar(device, dtype):
    """veto: positives as agree; negatives = all pairs of different known pseudo labels with s < t_pos, computed
    densely here from the reference similarity (t_neg plays no part)."""
    emb, pseudo = make_inputs(70, 5)
    emb = emb.to(dtype)
    pseudo[::9] = -1
    basis = torch.randn(6, 16, generator=torch.Generator().manual_seed(3)).to(dtype)
    a1, p, a2, n = (t.cpu() for t in miners.ConfidentPairMiner(basis.to(device), t_pos=0.3, t_neg=0.99,
                                                                mode="veto")(emb.to(device), pseudo.to(device)))
    agree = reference.select_confident_pairs(emb, basis, 0.3, -2.0, pseudo, "agree")
    assert torch.equal(a1, agree[0]) and torch.equal(p, agree[1])
    sim = reference.basis_similarity(emb, basis)
    if dtype == torch.float32:  # the kernel compares in float32
        sim = sim.float()
    known = pseudo >= 0
    want = (pseudo[:, None] != pseudo[None, :]) & known[:, None] & known[None, :] & (sim < 0.3)
    want.fill_diagonal_(False)
    got = torch.zeros_like(want)
    got[a2, n] = True
    assert torch.equal(got, want) and len(a2) == int(want.sum())
    assert len(a1) > 0 and len(a2) > 0


def test_veto_at_a_threshold_equal_to_a_similarity_splits_it_exactly():
    """A pair whose similarity equals t_pos is a positive (same labels) or vetoed (different), never a negative."""
    emb, pseudo = make_inputs(30, 3)
    basis = torch.randn(4, 16, generator=torch.Generator().manual_seed(5))
    sim = reference.basis_similarity(emb, basis).float()
    t = float(sim[0, 1])
    a1, p, a2, n = miners.ConfidentPairMiner(basis, t_pos=t, t_neg=0.0, mode="veto")(emb, pseudo)
    neg = set(zip(a2.tolist(), n.tolist()))
    assert (0, 1) not in neg and (1, 0) not in neg
    assert ((0, 1) in set(zip(a1.tolist(), p.tolist()))) == bool(pseudo[0] == pseudo[1])


def test_quantile_thresholds_read_the_moving_distributions_as_normal():
    emb, pseudo = make_inputs(60, 4)
    basis = FeatureBasis(num_classes=5, dim=16)
    basis.sd_loss(emb, pseudo)
    mu_p, mu_n = basis.thresholds()
    sd_p, sd_n = float(basis.var_pos) ** 0.5, float(basis.var_neg) ** 0.5
    t_pos, t_neg = basis.thresholds((0.5, 0.8413447460685429))  # z = 0 and z = 1
    assert t_pos == pytest.approx(mu_p, abs=1e-7) and t_neg == pytest.approx(mu_n + sd_n, rel=1e-6)
    assert basis.thresholds((0.15865525393145707, 0.5))[0] == pytest.approx(mu_p - sd_p, rel=1e-6)
    miner = miners.ConfidentPairMiner(basis, mode="agree", quantiles=(0.25, 0.75))
    expected = reference.select_confident_pairs(emb, basis.weight.detach(), *basis.thresholds((0.25, 0.75)), pseudo,
                                                "agree")
    assert_same_output(miner(emb, pseudo), expected)
    for bad in ((0.0, 0.5), (0.5, 1.0), (0.5,), (float("nan"), 0.5)):
        with pytest.raises(ValueError, match="quantiles"):
            miners.ConfidentPairMiner(basis, quantiles=bad)


def test_tensor_thresholds_select_as_numbers(device):
    """0-dim tensor thresholds (a FeatureBasis's buffers) select exactly what the same numbers select; bad ones are
    refused by name."""
    g = torch.Generator().manual_seed(7)
    emb, w, pseudo = torch.randn(50, 16, generator=g), torch.randn(8, 16, generator=g), torch.randint(0, 4, (50,))
    emb, w, pseudo = emb.to(device), w.to(device), pseudo.to(device)
    as_numbers = ops.select_confident_pairs(emb, w, 0.25, -0.1, pseudo, "agree")
    as_tensors = ops.select_confident_pairs(emb, w, torch.tensor(0.25, dtype=torch.float64, device=device),
                                            torch.tensor(-0.1, dtype=torch.float64, device=device), pseudo, "agree")
    assert as_numbers[0].numel() > 0 and as_numbers[2].numel() > 0
    assert all(torch.equal(a, b) for a, b in zip(as_numbers, as_tensors))
    with pytest.raises(ValueError, match="t_pos must be a number or a one-element floating tensor"):
        ops.select_confident_pairs(emb, w, torch.tensor([0.2, 0.3]), -0.1)
    with pytest.raises(ValueError, match="t_neg must be finite"):
        ops.select_confident_pairs(emb, w, torch.tensor(0.2), torch.tensor(float("nan")))
