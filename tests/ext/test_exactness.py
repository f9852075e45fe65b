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
def test_miner_self_pair_rules_equal_pml(name, kwargs, call, distance, ties):
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
    # With other labels, (i, i) can be a pair: ContrastiveLoss then sees the L2 distance of identical vectors,
    # computed as PML's cdist computes it
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(leaf_ours.grad, leaf_theirs.grad, rtol=1e-4, atol=5e-6)  # float32 sums


def quantised(n, d=8, seed=0):
    """Rows with entries in {-1, 0, 1}: many exact duplicates (distance 0) and exact ties."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, d), generator=g).float(), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("distance", [None, "l2 squared", "unnormalised", "unnormalised squared"])
def test_identical_rows_are_zero_apart_as_in_pml(distance):
    """The issue's numbers: 4 rows twice each. PML's cdist puts the copies 0 apart, so ContrastiveLoss is 0 and
    PairMarginMiner(pos_margin=0) finds no positive (the kernels once gave sqrt(2 - 2 cos) ~ 5e-4: 0.000488 and
    12 positives)."""
    make = {None: lambda: None, "l2 squared": lambda: pml_distances.LpDistance(power=2),
            "unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False),
            "unnormalised squared": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2)}[distance]
    extra = {} if distance is None else {"distance": make()}
    base = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * 10  # other rows far apart
    emb, lab = torch.cat([base, base]), torch.arange(4).repeat(2)
    loss = losses.ContrastiveLoss(**extra)(emb, lab)
    assert loss.item() == pml_losses.ContrastiveLoss(**extra)(emb, lab).item() == 0.0
    positives = miners.PairMarginMiner(pos_margin=0.0, **extra)(emb, lab)[0]
    assert positives.numel() == pml_miners.PairMarginMiner(pos_margin=0.0, **extra)(emb, lab)[0].numel() == 0


@pytest.mark.parametrize("n", [20, 200])  # torch.cdist's direct form (<= 25 rows) and its matrix-product form
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("type_of_triplets", ["hard", "semihard", "all"])
def test_quantised_batch_triplets_equal_pml(n, normalize, type_of_triplets):
    """Exact duplicates and ties everywhere: the triplets equal PML's as sets (the issue: 8837 against 8832)."""
    emb, lab = quantised(n)
    distance = pml_distances.LpDistance(normalize_embeddings=normalize)
    kwargs = {"margin": 0.2, "type_of_triplets": type_of_triplets, "distance": distance}
    ours = miners.TripletMarginMiner(**kwargs)(emb, lab)
    theirs = pml_miners.TripletMarginMiner(**kwargs)(emb, lab)
    assert len(theirs[0]) > 0
    assert as_sets(ours) == as_sets(theirs)


def pair_keys(a, p, n_refs):
    """Pairs (a, p) as sorted int64 keys: set equality of millions of pairs without Python tuples."""
    return torch.sort(a * n_refs + p).values


@pytest.mark.parametrize("n,m", [(2100, None), (300, 20_000)])  # several row tiles, against itself / a memory bank
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("power", [1, 2])
def test_distances_equal_pmls_to_the_last_bit(n, m, normalize, power):
    """Margins that are entries of PML's own distance matrix, taken from pairs of the side they decide: a distance
    one rounding away from PML's moves its pair across the margin. The kernels build torch.cdist's padded
    references once per op instead of torch doing it on every call, so their tiles must stay torch.cdist's."""
    g = torch.Generator().manual_seed(n + power)
    emb, lab = torch.randn(n, 32, generator=g) * 3, torch.randint(0, 50, (n,), generator=g)
    ref, ref_lab = (None, None) if m is None else (torch.randn(m, 32, generator=g) * 3,
                                                    torch.randint(0, 50, (m,), generator=g))
    distance = pml_distances.LpDistance(normalize_embeddings=normalize, power=power)
    full = distance(emb, emb if ref is None else ref)
    same = lab[:, None] == (lab if ref_lab is None else ref_lab)[None, :]
    if ref is None:
        same.fill_diagonal_(False)
    pos_values, neg_values = full[same].sort().values, full[~same].sort().values
    n_refs = full.shape[1]
    for k in range(1, 5):  # entries at 20 %, 40 %, ... of each side: both sides select some pairs
        margins = (pos_values[len(pos_values) * k // 5].item(), neg_values[len(neg_values) * k // 5].item())
        kwargs = {"pos_margin": margins[0], "neg_margin": margins[1], "distance": distance}
        ours = miners.PairMarginMiner(**kwargs)(emb, lab, ref, ref_lab)
        theirs = pml_miners.PairMarginMiner(**kwargs)(emb, lab, ref, ref_lab)
        for (a, p), (pa, pp) in ((ours[:2], theirs[:2]), (ours[2:], theirs[2:])):
            assert len(pa) > 0
            assert torch.equal(pair_keys(a, p, n_refs), pair_keys(pa, pp, n_refs))
