"""`query_rows=(begin, end)`: rows [begin, end) of emb against all of emb, the self pairs skipped (one rank's share of
a global batch, slade_ext.distributed). Every op gives exactly its full self comparison restricted to those anchors
(indices of emb, same order), the loss rows and their gradients those of the full call's rows, and the basis pair
statistics the moments over the pairs whose first row is a query; bad ranges are refused with the argument named."""
from __future__ import annotations

import pytest
import torch

from helpers.op_cases import embeddings, labels, with_ties
from slade_ext import loss_ops, ops, reference

N, D = 40, 8
RANGES = [(0, N), (0, 13), (13, 29), (29, N), (17, 17), (39, 40)]


def _inputs(device, ties=False, dtype=torch.float64):
    emb = embeddings(N, D, seed=5, dtype=dtype)
    emb = with_ties(emb) if ties else emb
    lab = labels(N, 5, seed=6)
    lab[::7] = -1  # an "unknown" label: no pair for the statistics; an ordinary class for the miners
    return emb.to(device), lab.to(device), embeddings(6, D, seed=7, dtype=dtype).to(device)


def _restrict(full, begin, end):
    """The full output's pairs (or triplets) whose anchor is in [begin, end), in their order."""
    out = list(full)
    groups = ((0, 1), (2, 3)) if len(full) == 4 else ((0, 1, 2),)
    for group in groups:
        keep = (full[group[0]] >= begin) & (full[group[0]] < end)
        for k in group:
            out[k] = full[k][keep]
    return tuple(out)


MINERS = {
    "multi_similarity": lambda e, l, w, q: ops.mine_multi_similarity(e, l, epsilon=0.1, query_rows=q),
    "multi_similarity_l2": lambda e, l, w, q: ops.mine_multi_similarity(e, l, distance="l2", query_rows=q),
    "pair_margin": lambda e, l, w, q: ops.mine_pair_margin(e, l, pos_margin=0.1, neg_margin=0.3, query_rows=q),
    "batch_hard": lambda e, l, w, q: ops.mine_batch_hard(e, l, query_rows=q),
    "triplet_all": lambda e, l, w, q: ops.mine_triplet_margin(e, l, margin=0.2, query_rows=q),
    "triplet_semihard_capped": lambda e, l, w, q: ops.mine_triplet_margin(
        e, l, margin=0.2, type_of_triplets="semihard", max_triplets_per_anchor=3, distance="l2", query_rows=q),
    "confident_literal": lambda e, l, w, q: ops.select_confident_pairs(e, w, 0.2, -0.2, query_rows=q),
    "confident_agree": lambda e, l, w, q: ops.select_confident_pairs(e, w, 0.1, -0.1, l, "agree", query_rows=q),
}


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("name", list(MINERS))
def test_miners_give_their_full_output_restricted_to_the_query_rows(device, name, ties):
    emb, lab, w = _inputs(device, ties)
    mine = MINERS[name]
    full = mine(emb, lab, w, None)
    assert all(t.numel() for t in full[:2]), "the case must mine something"
    for begin, end in RANGES:
        got = mine(emb, lab, w, (begin, end))
        want = _restrict(full, begin, end)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert torch.equal(a, b), (name, begin, end)


LOSS_ROWS = {
    "multi_similarity": lambda e, l, q: loss_ops.multi_similarity_loss_rows(e, l, query_rows=q),
    "multi_similarity_l2": lambda e, l, q: loss_ops.multi_similarity_loss_rows(e, l, distance="l2", query_rows=q),
    "contrastive": lambda e, l, q: loss_ops.contrastive_loss_rows(e, l, pos_margin=0.1, neg_margin=0.9, query_rows=q),
}


@pytest.mark.parametrize("name", list(LOSS_ROWS))
def test_loss_rows_and_their_gradients_are_the_full_calls_rows(device, name):
    emb, lab, _ = _inputs(device)
    weights = torch.randn(N, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).to(device)
    weights[:, 2:] = 0  # the counts carry no gradient
    for begin, end in RANGES:
        x_full = emb.clone().requires_grad_()
        full = LOSS_ROWS[name](x_full, lab, None)
        (full[begin:end] * weights[begin:end]).sum().backward()
        x = emb.clone().requires_grad_()
        rows = LOSS_ROWS[name](x, lab, (begin, end))
        assert rows.shape == (end - begin, 4)
        torch.testing.assert_close(rows, full[begin:end].detach(), rtol=1e-12, atol=1e-12)
        (rows * weights[begin:end]).sum().backward()
        torch.testing.assert_close(x.grad, x_full.grad, rtol=1e-10, atol=1e-12)


def _stats_of_query_rows(emb, w, lab, begin, end):
    """Reference moments over the pairs (i, j), i in [begin, end), j != i, both labels >= 0."""
    sim = reference.basis_similarity(emb, w)
    n = emb.shape[0]
    rows = torch.zeros(n, dtype=torch.bool, device=emb.device)
    rows[begin:end] = True
    valid = rows[:, None] & ~torch.eye(n, dtype=torch.bool, device=emb.device)
    valid &= (lab[:, None] >= 0) & (lab[None, :] >= 0)
    same = lab[:, None] == lab[None, :]
    out = []
    for mask in (valid & same, valid & ~same):
        values = sim[mask]
        mean = values.mean() if values.numel() else sim.sum() * 0
        var = ((values - mean) ** 2).mean() if values.numel() else sim.sum() * 0
        out += [mean, var]
    return out, ((valid & same).sum(), (valid & ~same).sum())


def test_basis_pair_stats_of_the_query_rows_and_their_gradients(device):
    emb, lab, _ = _inputs(device)
    w0 = embeddings(5, D, seed=9, dtype=torch.float64).to(device)
    for begin, end in RANGES:
        x, w = emb.clone().requires_grad_(), w0.clone().requires_grad_()
        got = ops.basis_pair_stats(x, w, lab, query_rows=(begin, end))
        x_ref, w_ref = emb.clone().requires_grad_(), w0.clone().requires_grad_()
        moments, counts = _stats_of_query_rows(x_ref, w_ref, lab, begin, end)
        assert (int(got[4]), int(got[5])) == (int(counts[0]), int(counts[1]))
        for a, b in zip(got[:4], moments):
            torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-12)
        coef = (1.0, -2.0, 0.5, 3.0)
        sum(c * t for c, t in zip(coef, got[:4])).backward()
        sum(c * t for c, t in zip(coef, moments)).backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-9, atol=1e-12)


def test_float32_and_non_contiguous_inputs(device):
    emb, lab, w = _inputs(device, dtype=torch.float32)
    wide = torch.zeros(N, 2 * D, device=device)
    wide[:, ::2] = emb
    strided = wide[:, ::2]
    assert not strided.is_contiguous()
    for name in ("multi_similarity", "batch_hard", "confident_agree"):
        full = MINERS[name](emb, lab, w, None)
        got = MINERS[name](strided, lab, w, (11, 31))
        assert all(torch.equal(a, b) for a, b in zip(got, _restrict(full, 11, 31))), name


@pytest.mark.parametrize("query_rows,match", [
    ((5, 41), "query_rows must satisfy 0 <= begin <= end <= 40"),
    ((-1, 3), "query_rows must satisfy"),
    ((9, 4), "query_rows must satisfy"),
    ((1, 2, 3), "query_rows must be None or"),
    ((0.5, 2), "two integers"),
])
def test_bad_ranges_name_the_argument(query_rows, match):
    emb, lab, _ = _inputs("cpu")
    with pytest.raises(ValueError, match=match):
        ops.mine_batch_hard(emb, lab, query_rows=query_rows)


def test_query_rows_need_the_self_comparison_and_no_pair_lists():
    emb, lab, ref = _inputs("cpu")
    ref_lab = lab[:6].clone()
    with pytest.raises(ValueError, match="query_rows needs ref_emb=None"):
        ops.mine_multi_similarity(emb, lab, ref, ref_lab, query_rows=(0, 3))
    lists = loss_ops.pair_lists(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([0]), torch.tensor([5]),
                                N, N, as_mask=True)
    with pytest.raises(ValueError, match="cannot be combined with pair lists"):
        loss_ops.multi_similarity_loss_rows(emb, None, lists=lists, query_rows=(0, 3))
