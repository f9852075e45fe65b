"""PML's self-pair rules, class by class, on the calls where ref_emb and ref_labels are not both "the same object"
(pytorch_metric_learning/utils/loss_and_miner_utils.py get_all_pairs_indices drops (i, i) when ref_labels *is*
labels; MultiSimilarityMiner masks the diagonal when ref_emb *is* embeddings). The usual such call is the
"detached reference": miner(E, L, E.detach(), L) / loss(E, L, ref_emb=E.detach(), ref_labels=L)."""
from __future__ import annotations

import pytest
import torch

from slade_ext import losses, miners

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")


def batch(n=32, classes=8, d=16, seed=0, singletons=True, ties=False):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    if ties:  # duplicated rows: (i, i) ties with a true positive
        emb = torch.cat([emb[: n // 2]] * 2)
    lab = torch.randint(0, classes, (n,), generator=g)
    if singletons:  # classes of one sample: the anchor's only same-label reference is itself
        lab[0], lab[1] = 100, 101
    if ties:
        lab = torch.cat([lab[: n // 2]] * 2)
    return emb, lab


CALLS = {
    "detached": lambda e, l: (e, l, e.detach().clone(), l),
    "same_emb_labels_copy": lambda e, l: (e, l, e, l.clone()),
    "same_emb_other_labels": lambda e, l: (e, l, e, torch.roll(l, 1)),
    "detached_other_labels": lambda e, l: (e, l, e.detach().clone(), torch.roll(l, 1)),
}

MINERS = [
    ("MultiSimilarityMiner", {}),
    ("MultiSimilarityMiner", {"epsilon": 0.4}),
    ("PairMarginMiner", {"pos_margin": 0.0, "neg_margin": 0.8}),
    ("PairMarginMiner", {"pos_margin": -1.0, "neg_margin": 0.8}),
    ("BatchHardMiner", {}),
    ("TripletMarginMiner", {"margin": 0.2}),
    ("TripletMarginMiner", {"margin": 2.0, "type_of_triplets": "all"}),
]


def as_sets(out):
    rows = [t.tolist() for t in out]
    if len(out) == 4:
        return set(zip(rows[0], rows[1])), set(zip(rows[2], rows[3]))
    return set(zip(*rows))


@pytest.mark.parametrize("distance", ["default", "cosine"])
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("name,kwargs", MINERS)
@pytest.mark.parametrize("ties", [False, True])
def test_miner_self_pair_rules_equal_pml(request, name, kwargs, call, distance, ties):
    if name == "PairMarginMiner" and kwargs["pos_margin"] == 0.0 and distance == "default" and (
        ties or "same_emb" in call or "other_labels" in call
    ):
        # Identical vectors at L2 distance ~0 against pos_margin=0: the kernel computes sqrt(2 - 2 cos), which
        # can round to ~6e-4 where PML's cdist gives 0 (a known kernel defect, open: it needs a CUDA change too).
        request.applymarker(pytest.mark.xfail(reason="L2 distance of identical vectors: kernel rounding (~6e-4) "
                                                     "vs PML's cdist (0)", strict=False))
    emb, lab = batch(ties=ties)
    extra = {} if distance == "default" else {"distance": pml_distances.CosineSimilarity()}
    args = CALLS[call](emb, lab)
    ours = getattr(miners, name)(**kwargs, **extra)(*args)
    theirs = getattr(pml_miners, name)(**kwargs, **extra)(*args)
    for t in ours:
        assert t.dtype == torch.int64 and t.dim() == 1
    assert as_sets(ours) == as_sets(theirs)


def test_detached_call_no_longer_keeps_self_pairs():
    """The numbers of the issue: PairMarginMiner(pos_margin=0) on a 32 x 8 batch, detached reference."""
    emb, lab = batch(singletons=False)
    ours = miners.PairMarginMiner(pos_margin=0.0)(emb, lab, emb.detach(), lab)
    theirs = pml_miners.PairMarginMiner(pos_margin=0.0)(emb, lab, emb.detach(), lab)
    assert not any(a == p for a, p in zip(ours[0].tolist(), ours[1].tolist()))
    assert as_sets(ours) == as_sets(theirs)


@pytest.mark.parametrize("call", ["detached", "detached_other_labels", "same_emb_other_labels"])
@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.MultiSimilarityLoss(),
        lambda m: m.MultiSimilarityLoss(alpha=5, beta=20, base=0.3),
        lambda m: m.ContrastiveLoss(),
        lambda m: m.ContrastiveLoss(pos_margin=0.2, neg_margin=0.9),
    ],
)
def test_loss_self_pair_rules_equal_pml(make, call):
    emb, lab = batch()
    leaf_ours, leaf_theirs = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    e1, l1, r1, rl1 = CALLS[call](leaf_ours, lab)
    e2, l2, r2, rl2 = CALLS[call](leaf_theirs, lab)
    ours = make(losses)(e1, l1, None, r1, rl1)
    theirs = make(pml_losses)(e2, l2, None, r2, rl2)
    # With other labels, (i, i) can be a pair; ContrastiveLoss then sees the L2 distance of identical vectors,
    # which the kernel rounds to up to ~6e-4 (PML's cdist: 0): a kernel rounding difference, looser tolerance.
    loose = call != "detached" and isinstance(make(losses), losses.ContrastiveLoss)
    tol = {"rtol": 1e-3, "atol": 1e-3} if loose else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(ours, theirs, **tol)
    ours.backward()
    theirs.backward()
    if not loose:  # d|x - y| at x = y: PML's cdist gives 0, the kernel the rounded direction
        torch.testing.assert_close(leaf_ours.grad, leaf_theirs.grad, rtol=1e-4, atol=1e-6)
