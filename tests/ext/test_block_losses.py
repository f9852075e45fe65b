"""slade_ext.losses.NTXentLoss and TripletMarginLoss (the block losses) against pytorch-metric-learning's: values
and gradients for all pairs, cross-batch and detached references, miner tuples (pairs, triplets, duplicates), every
PML distance option, blocks of any size, half inputs; PML's zero-loss rules; the memory they keep for backward;
all triplets past 2^31; the fallback and the errors."""
from __future__ import annotations

import warnings

import pytest
import torch

from slade_ext import losses
from slade_ext._compat import FallbackWarning
from slade_ext.distributed import DistributedLossWrapper

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

DISTANCES = {
    "default": lambda: None,
    "cosine": lambda: pml_distances.CosineSimilarity(),
    "l2": lambda: pml_distances.LpDistance(),
    "l2 squared": lambda: pml_distances.LpDistance(power=2),
    "l2 unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False),
    "dot": lambda: pml_distances.DotProductSimilarity(),
    "dot unnormalised": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
}


def make_inputs(n, n_classes, d=16, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g).to(dtype)
    return emb.to(device), torch.randint(0, n_classes, (n,), generator=g).to(device)


LOSSES = {"NTXentLoss": {"temperature": 0.1}, "TripletMarginLoss": {"margin": 0.2}}


def both(distance_name, name="NTXentLoss", tile_rows=None, **kwargs):
    kwargs = dict(LOSSES[name], **kwargs)
    ours = getattr(losses, name)(distance=DISTANCES[distance_name](), tile_rows=tile_rows, **kwargs)
    distance = DISTANCES[distance_name]()
    pml = getattr(pml_losses, name)(**kwargs, **({} if distance is None else {"distance": distance}))
    return ours, pml


def compare(ours_fn, pml_fn, emb, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, rtol=1e-9,
            detached_ref=False):
    """Values and gradients (embeddings, and ref_emb when it is a separate leaf) of ours and PML's."""
    results = []
    for fn in (ours_fn, pml_fn):
        e = emb.clone().requires_grad_(True)
        r = None
        if detached_ref:
            r = e.detach()
        elif ref_emb is not None:
            r = ref_emb.clone().requires_grad_(True)
        rl = labels if detached_ref else ref_labels
        value = fn(e, labels, indices_tuple, r, rl)
        leaves = [e] + ([r] if ref_emb is not None and not detached_ref else [])
        grads = torch.autograd.grad(value, leaves, allow_unused=True) if value.requires_grad else [None] * len(leaves)
        results.append((value.detach(), grads))
    (ours, ours_grads), (pml, pml_grads) = results
    assert not torch.isnan(ours)
    torch.testing.assert_close(ours, pml.to(ours.dtype), rtol=rtol, atol=rtol)
    for a, b in zip(ours_grads, pml_grads):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b.to(a.dtype), rtol=rtol * 100, atol=rtol * 100)
    return ours


@pytest.mark.parametrize("distance", list(DISTANCES))
@pytest.mark.parametrize("tile_rows", [None, 1, 7])
@pytest.mark.parametrize("name", list(LOSSES))
def test_all_pairs_equal_pml(name, distance, tile_rows, device):
    emb, labels = make_inputs(48, 6, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every distance option runs the tiled path
        ours, pml = both(distance, name, tile_rows=tile_rows)
        assert ours.fused()
        value = compare(ours, pml, emb, labels, rtol=1e-6 if "unnormalised" in distance else 1e-9)
    assert value > 0


@pytest.mark.parametrize("tile_rows", [None, 5])
@pytest.mark.parametrize("name", list(LOSSES))
def test_references_equal_pml(name, tile_rows, device):
    emb, labels = make_inputs(30, 5, device=device)
    ref, ref_labels = make_inputs(41, 5, seed=1, device=device)
    ours, pml = both("default", name, tile_rows=tile_rows)
    compare(ours, pml, emb, labels, ref_emb=ref, ref_labels=ref_labels)
    # the detached-reference call: PML drops (i, i) because ref_labels is labels
    value = compare(ours, pml, emb, labels, detached_ref=True)
    torch.testing.assert_close(value, ours(emb, labels).detach())


@pytest.mark.parametrize("tile_rows", [None, 3])
@pytest.mark.parametrize("name", list(LOSSES))
def test_miner_tuples_equal_pml(name, tile_rows, device):
    emb, labels = make_inputs(40, 5, device=device)
    ours, pml = both("default", name, tile_rows=tile_rows)
    pairs = pml_miners.MultiSimilarityMiner(0.1)(emb, labels)
    assert pairs[0].numel() > 1 and pairs[2].numel() > 1
    compare(ours, pml, emb, labels, pairs)
    # triplets (a, p, n) become pairs (a, p, a, n); PML's (pairs x pairs) mask keeps this test small
    triplets = tuple(t[:400] for t in pml_miners.TripletMarginMiner(0.5)(emb, labels))
    compare(ours, pml, emb, labels, triplets)
    # listed pairs count as often as they are listed, negatives included
    a1, p, a2, n = pairs
    doubled = (torch.cat([a1, a1[:5]]), torch.cat([p, p[:5]]), torch.cat([a2, a2[:9]]), torch.cat([n, n[:9]]))
    compare(ours, pml, emb, None, doubled)
    ref, ref_labels = make_inputs(23, 5, seed=2, device=device)
    cross = pml_miners.MultiSimilarityMiner(0.1)(emb, labels, ref, ref_labels)
    compare(ours, pml, emb, labels, cross, ref_emb=ref, ref_labels=ref_labels)


def test_simclr_views_and_ties(device):
    """Two views per label (the self-supervised stage's call), with duplicated rows (ties) among them."""
    emb, _ = make_inputs(16, 1, device=device)
    emb = torch.cat([emb, emb[:4]])
    views = torch.cat([emb, emb + 0.01 * torch.randn_like(emb)])
    labels = torch.arange(emb.shape[0], device=device).repeat(2)
    ours, pml = both("default", temperature=0.07, tile_rows=6)
    compare(ours, pml, views, labels)


@pytest.mark.parametrize("case", ["single class", "all distinct", "one pair each", "label -1", "no pairs listed"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_pml_zero_rules(name, case, device):
    emb, labels = make_inputs(12, 3, device=device)
    indices_tuple = None
    if case == "single class":  # no negatives: PML returns 0
        labels = torch.zeros_like(labels)
    elif case == "all distinct":  # no positives
        labels = torch.arange(12, device=device)
    elif case == "one pair each":  # at most one pair of each kind
        one = torch.tensor([0], device=device)
        indices_tuple = (one, one + 1, one, one + 2)
    elif case == "label -1":  # an ordinary label to PML's NTXentLoss
        labels[::2] = -1
    else:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        indices_tuple = (empty, empty, empty, empty)
    ours, pml = both("default", name)
    value = compare(ours, pml, emb, labels, indices_tuple)
    # PML's NTXentLoss is 0 with at most one pair of each kind; its TripletMarginLoss has one triplet then
    assert (value > 0) == (case == "label -1" or (case == "one pair each" and name == "TripletMarginLoss"))


@pytest.mark.parametrize("name", list(LOSSES))
def test_half_precision_and_non_contiguous(name, device):
    emb, labels = make_inputs(64, 8, d=32, dtype=torch.float32, device=device)
    ours, pml = both("default", name)
    for dtype in (torch.bfloat16, torch.float16):
        half = emb.to(dtype)
        value = ours(half, labels)
        assert value.dtype == dtype
        torch.testing.assert_close(value.float(), pml(half.float(), labels), rtol=2e-2, atol=2e-2)
    wide = torch.cat([emb, emb], dim=1)[:, ::2]  # a strided view
    assert not wide.is_contiguous()
    compare(ours, pml, wide, labels, rtol=1e-5)
    if device == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            value = ours(emb, labels)
        torch.testing.assert_close(value.float(), pml(emb, labels), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", list(LOSSES))
def test_backward_keeps_no_block_of_the_matrix(name):
    """What autograd keeps for backward is the inputs (O(N d)), not the N x N similarities (16 MiB here)."""
    n, d = 2048, 16
    emb, labels = make_inputs(n, n // 2, d=d, dtype=torch.float32)
    emb.requires_grad_(True)
    saved = {}

    def pack(t):  # the memory behind each saved tensor (a block's rows are views of the embeddings)
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        value = getattr(losses, name)(tile_rows=256)(emb, labels)
    assert sum(saved.values()) < 4 * n * d * 4  # a few copies of the embeddings at most
    value.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    # PML's keeps the whole matrix, or one index per pair or triplet, for backward
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        getattr(pml_losses, name)()(emb[:512], labels[:512])
    assert sum(saved.values()) > 512 * 512 * 4


REDUCERS = {"mean": lambda: pml_reducers.MeanReducer(), "sum": lambda: pml_reducers.SumReducer(),
            "avg_nonzero": lambda: pml_reducers.AvgNonZeroReducer()}


@pytest.mark.parametrize("reference", ["none", "cross-batch"])
@pytest.mark.parametrize("tuples", [None, "pairs", "triplets"])
@pytest.mark.parametrize("reducer", list(REDUCERS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_sum_and_count_reducers_equal_pml(name, reducer, tuples, reference, device):
    """MeanReducer, SumReducer and AvgNonZeroReducer run in the blocks (no fallback), equal to PML's with them."""
    emb, labels = make_inputs(40, 5, device=device)
    ref_emb, ref_labels = (None, None) if reference == "none" else make_inputs(30, 5, seed=1, device=device)
    indices_tuple = None
    if tuples is not None:
        miner = (pml_miners.MultiSimilarityMiner(epsilon=0.3) if tuples == "pairs"
                 else pml_miners.TripletMarginMiner(margin=0.3))
        indices_tuple = miner(emb, labels, ref_emb, ref_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        ours = getattr(losses, name)(**LOSSES[name], reducer=REDUCERS[reducer]())
    assert ours.fused()
    pml = getattr(pml_losses, name)(**LOSSES[name], reducer=REDUCERS[reducer]())
    compare(ours, pml, emb, labels, indices_tuple, ref_emb, ref_labels)


NTXENT_REDUCERS = {
    "threshold": lambda: pml_reducers.ThresholdReducer(low=2.0, high=4.0),
    "per anchor": lambda: pml_reducers.PerAnchorReducer(),
    "per anchor, sum": lambda: pml_reducers.PerAnchorReducer(pml_reducers.SumReducer()),
    "multiple": lambda: pml_reducers.MultipleReducers({"loss": pml_reducers.SumReducer()}),
}


@pytest.mark.parametrize("reference", ["none", "cross-batch"])
@pytest.mark.parametrize("tuples", [None, "pairs", "duplicates"])
@pytest.mark.parametrize("reducer", list(NTXENT_REDUCERS))
def test_ntxent_hands_any_reducer_its_pair_losses(reducer, tuples, reference, device):
    """Any PML reducer gets NTXentLoss's positive pairs' losses and their (anchor, ref) indices, as from PML's."""
    emb, labels = make_inputs(40, 5, device=device)
    ref_emb, ref_labels = (None, None) if reference == "none" else make_inputs(40, 5, seed=1, device=device)
    indices_tuple = None
    if tuples is not None:
        indices_tuple = pml_miners.MultiSimilarityMiner(epsilon=0.3)(emb, labels, ref_emb, ref_labels)
        if tuples == "duplicates":
            indices_tuple = tuple(torch.cat([t, t[::3]]) for t in indices_tuple)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        ours = losses.NTXentLoss(0.1, reducer=NTXENT_REDUCERS[reducer](), tile_rows=7)
    pml = pml_losses.NTXentLoss(0.1, reducer=NTXENT_REDUCERS[reducer]())
    compare(ours, pml, emb, labels, indices_tuple, ref_emb, ref_labels)


@pytest.mark.parametrize("tuples", [None, "duplicates", "too few"])
def test_ntxent_do_nothing_reducer_gives_pml_pair_losses(tuples):
    emb, labels = make_inputs(30, 4)
    indices_tuple = None
    if tuples == "duplicates":
        a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=0.3)(emb, labels)
        indices_tuple = (torch.cat([a1, a1[:5]]), torch.cat([p, p[:5]]), a2, n)
    elif tuples == "too few":
        indices_tuple = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    got = losses.NTXentLoss(0.1, reducer=pml_reducers.DoNothingReducer(), tile_rows=4)(emb, labels, indices_tuple)
    want = pml_losses.NTXentLoss(0.1, reducer=pml_reducers.DoNothingReducer())(emb, labels, indices_tuple)
    got, want = got["loss"], want["loss"]
    assert got["reduction_type"] == want["reduction_type"]
    if not torch.is_tensor(want["losses"]):
        assert got["losses"] == want["losses"] == 0
        return
    # the same multiset of (anchor, ref, loss); listed pairs come sorted by (anchor, ref) here
    def rows(d):  # sorted by (anchor, ref), then by loss
        a, r = d["indices"]
        by_loss = torch.argsort(d["losses"], stable=True)
        order = by_loss[torch.argsort((a * 1000 + r)[by_loss], stable=True)]
        return (a * 1000 + r)[order], d["losses"][order]

    (k1, v1), (k2, v2) = rows(got), rows(want)
    torch.testing.assert_close(k1, k2)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("options", [{"smooth_loss": True}, {"swap": True}, {"smooth_loss": True, "swap": True}],
                         ids=["smooth", "swap", "smooth+swap"])
@pytest.mark.parametrize("distance", ["default", "cosine", "l2 squared"])
@pytest.mark.parametrize("reducer", [None, "mean", "sum"])
@pytest.mark.parametrize("tuples", [None, "pairs", "triplets", "cross-batch"])
@pytest.mark.parametrize("tile_rows", [None, 3])
def test_smooth_and_swap_triplet_loss_equal_pml(tuples, tile_rows, reducer, distance, options, device):
    """smooth_loss (softplus) and swap (min of d_an, d_pn) over every triplet, each anchor's (positives x
    negatives) block at a time; listed triplets in chunks."""
    emb, labels = make_inputs(36, 4, device=device)
    ref_emb, ref_labels = (None, None) if tuples != "cross-batch" else make_inputs(30, 4, seed=1, device=device)
    indices_tuple = None
    if tuples == "pairs":
        indices_tuple = pml_miners.MultiSimilarityMiner(epsilon=0.3)(emb, labels)
    elif tuples == "triplets":
        indices_tuple = pml_miners.TripletMarginMiner(margin=0.3)(emb, labels)
    def extra():
        out = dict(options) if reducer is None else dict(options, reducer=REDUCERS[reducer]())
        if distance != "default":
            out["distance"] = DISTANCES[distance]()
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        ours = losses.TripletMarginLoss(0.2, tile_rows=tile_rows, **extra())
    compare(ours, pml_losses.TripletMarginLoss(0.2, **extra()), emb, labels, indices_tuple, ref_emb, ref_labels)


def test_smooth_triplet_loss_without_triplets_is_an_attached_zero():
    emb, labels = make_inputs(10, 10)
    labels = torch.arange(10)  # no positives
    e = emb.clone().requires_grad_()
    value = losses.TripletMarginLoss(smooth_loss=True)(e, labels)
    assert value.item() == 0 and value.requires_grad


def test_pml_options_fall_back_with_one_warning():
    emb, labels = make_inputs(32, 4)
    with pytest.warns(FallbackWarning, match="reducer ThresholdReducer"):  # a threshold needs every triplet's loss
        ours = losses.TripletMarginLoss(0.2, reducer=pml_reducers.ThresholdReducer(low=0.05))
    assert not ours.fused()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # warned once, at construction
        value = ours(emb, labels)
    torch.testing.assert_close(value, pml_losses.TripletMarginLoss(
        0.2, reducer=pml_reducers.ThresholdReducer(low=0.05))(emb, labels))
    with pytest.warns(FallbackWarning, match="collect_stats"):
        assert not losses.NTXentLoss(distance=pml_distances.CosineSimilarity(collect_stats=True)).fused()


def test_fallback_finds_pml_when_pml_is_patched(monkeypatch):
    monkeypatch.setattr(pml_losses, "NTXentLoss", losses.NTXentLoss)
    emb, labels = make_inputs(20, 4)
    with pytest.warns(FallbackWarning):
        ours = pml_losses.NTXentLoss(0.1, distance=pml_distances.CosineSimilarity(collect_stats=True))
    assert type(ours.fallback).__module__.startswith("pytorch_metric_learning")
    torch.testing.assert_close(ours(emb, labels), losses.NTXentLoss(0.1)(emb, labels))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"temperature": float("nan")}, ValueError, "temperature"), ({"temperature": 0}, ValueError, "temperature"),
     ({"temperature": -0.1}, ValueError, "temperature"), ({"tile_rows": 0}, ValueError, "tile_rows"),
     ({"tile_rows": 2.5}, ValueError, "tile_rows"), ({"distance": "cosine"}, TypeError, "distance")],
)
def test_bad_settings_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        losses.NTXentLoss(**kwargs)


def test_bad_inputs_name_the_argument():
    emb, labels = make_inputs(10, 3)
    loss = losses.NTXentLoss()
    with pytest.raises(ValueError, match="labels"):
        loss(emb, labels[:9])
    with pytest.raises(TypeError, match="ref_emb"):
        loss(emb, labels, ref_emb=emb.float(), ref_labels=labels)
    with pytest.raises(ValueError, match=r"indices_tuple\[0\]"):
        loss(emb, labels, (torch.tensor([0, 99]), torch.tensor([1, 2]), torch.tensor([0]), torch.tensor([3])))
    with pytest.raises(ValueError, match="cannot both be None"):
        loss(emb)


def test_the_efficient_distributed_wrapper_names_what_it_supports():
    with pytest.raises(TypeError, match="NTXentLoss"):
        DistributedLossWrapper(losses.NTXentLoss(), efficient=True)
    emb, labels = make_inputs(16, 4)
    # one process: the plain wrapper is the loss itself
    torch.testing.assert_close(DistributedLossWrapper(losses.NTXentLoss())(emb, labels),
                               losses.NTXentLoss()(emb, labels))


def test_all_triplets_past_two_to_the_31():
    """1,400 x 1,400 x 1,400 > 2^31 (PML #688): all 686M triplets of two classes, against an anchor-by-anchor sum."""
    n = 1400
    emb, labels = make_inputs(n, 2, d=8, dtype=torch.float64)
    emb.requires_grad_(True)
    value = losses.TripletMarginLoss(margin=0.1)(emb, labels)
    value.backward()
    with torch.no_grad():
        dist = torch.cdist(torch.nn.functional.normalize(emb, dim=1), torch.nn.functional.normalize(emb, dim=1))
        total, count = 0.0, 0
        for a in range(n):
            positive, negative = labels == labels[a], labels != labels[a]
            positive[a] = False
            violation = (dist[a, positive][:, None] - dist[a, negative][None, :] + 0.1).relu()
            total, count = total + float(violation.sum()), count + int((violation > 0).sum())
    assert count > 2 ** 28
    torch.testing.assert_close(value.detach(), torch.tensor(total / count, dtype=torch.float64))
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, option", [({"triplets_per_anchor": 5}, "triplets_per_anchor")])
def test_triplet_options_without_a_block_path_fall_back(kwargs, option):
    emb, labels = make_inputs(24, 4)
    with pytest.warns(FallbackWarning, match=option):
        ours = losses.TripletMarginLoss(0.1, **kwargs)
    assert not ours.fused()
    if option != "triplets_per_anchor":  # random sampling differs call by call
        torch.testing.assert_close(ours(emb, labels), pml_losses.TripletMarginLoss(0.1, **kwargs)(emb, labels))


def test_bad_triplets_name_the_argument():
    emb, labels = make_inputs(10, 3)
    loss = losses.TripletMarginLoss()
    with pytest.raises(ValueError, match=r"indices_tuple\[2\]"):
        loss(emb, labels, (torch.tensor([0]), torch.tensor([1]), torch.tensor([10])))
    with pytest.raises(ValueError, match="equal lengths"):
        loss(emb, labels, (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match="margin"):
        losses.TripletMarginLoss(margin=float("inf"))
