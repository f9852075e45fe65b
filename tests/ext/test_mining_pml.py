"""Parity of the mining family with pytorch-metric-learning, the one place it is tested: the mining ops and the
slade_ext.miners modules select the same pairs/triplets as PML's miners (compared as sets), follow PML's self-pair
rule, upcast half inputs, and fall back to PML (with one warning) for options they do not implement.

PML computes on continuous float32 inputs in its own way, which can round a similarity differently on CUDA, so the
device-parametrized checks run on the CPU; the CUDA kernels meet the CPU kernels in test_mining.py.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from helpers.cuda_cases import skip_inexact_on_cuda
from helpers.op_cases import embeddings, labels, miner_inputs
from slade_ext import miners, ops
from slade_ext._compat import FallbackWarning

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")


# ---- the ops ---------------------------------------------------------------------------------------------------

# every distance name of the ops (slade_ext.distances) and the PML distance it stands for
OP_DISTANCES = {
    "cosine": lambda: pml_distances.CosineSimilarity(),
    "dot": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
    "l2": lambda: pml_distances.LpDistance(),
    "l2sq": lambda: pml_distances.LpDistance(power=2),
    "euclidean": lambda: pml_distances.LpDistance(normalize_embeddings=False),
    "sqeuclidean": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2),
}


def as_set(indices):
    return set(zip(*[t.tolist() for t in indices]))


def pair_sets(out):
    return as_set(out[:2]), as_set(out[2:])


def op_pml_cases():
    # (n, m or None, classes): self-comparison and cross-batch with a larger reference set.
    return [(64, None, 8), (128, None, 40), (32, 256, 8), (100, None, 2)]


def op_pml_inputs(device, n, m, classes):
    emb, lab = embeddings(n, 32), labels(n, classes)
    ref, ref_lab = (None, None) if m is None else (embeddings(m, 32, seed=5), labels(m, classes, seed=5))
    return emb, lab, ref, ref_lab


@pytest.mark.parametrize("n,m,classes", op_pml_cases())
@pytest.mark.parametrize("distance", list(OP_DISTANCES))
def test_op_multi_similarity_matches_pml(device, n, m, classes, distance):
    skip_inexact_on_cuda(device)
    emb, lab, ref, ref_lab = op_pml_inputs(device, n, m, classes)
    theirs = pml_miners.MultiSimilarityMiner(epsilon=0.1, distance=OP_DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_multi_similarity(emb, lab, ref, ref_lab, epsilon=0.1, distance=distance)
    assert pair_sets(ours) == pair_sets(theirs)


@pytest.mark.parametrize("n,m,classes", op_pml_cases())
@pytest.mark.parametrize("distance", list(OP_DISTANCES))
def test_op_pair_margin_matches_pml(device, n, m, classes, distance):
    skip_inexact_on_cuda(device)
    emb, lab, ref, ref_lab = op_pml_inputs(device, n, m, classes)
    # margins inside the distance's range (unnormalised ones have their own scale): both sides select some pairs
    values = OP_DISTANCES[distance]()(emb, ref).flatten()
    margins = tuple(values.quantile(q).item() for q in (0.4, 0.6))
    theirs = pml_miners.PairMarginMiner(*margins, distance=OP_DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_pair_margin(emb, lab, ref, ref_lab, *margins, distance=distance)
    assert pair_sets(ours) == pair_sets(theirs)


@pytest.mark.parametrize("offset", [2**31, 2**32, -2**40])
@pytest.mark.parametrize("op", ["pair_margin", "multi_similarity", "batch_hard"])
def test_op_labels_beyond_int32_match_pml(op, offset):
    """The CPU pair-margin, multi-similarity and batch-hard epilogues compare int32 copies of the labels when every
    label fits: labels that do not (here some are shifted by `offset`, which truncation to 32 bits would map back
    onto the others) take the general path, and the pairs and triplets stay PML's."""
    emb, lab = embeddings(200, 32), labels(200, 8)
    lab = torch.where(torch.arange(200) % 2 == 0, lab, lab + offset)
    if op == "pair_margin":
        values = OP_DISTANCES["l2"]()(emb, emb).flatten()
        margins = tuple(values.quantile(q).item() for q in (0.4, 0.6))
        theirs = pml_miners.PairMarginMiner(*margins)(emb, lab)
        ours = ops.mine_pair_margin(emb, lab, None, None, *margins, distance="l2")
    elif op == "batch_hard":
        theirs = pml_miners.BatchHardMiner()(emb, lab)
        ours = ops.mine_batch_hard(emb, lab, None, None, distance="l2")
        assert len(theirs[0]) > 0 and as_set(ours) == as_set(theirs)
        return
    else:
        theirs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(emb, lab)
        ours = ops.mine_multi_similarity(emb, lab, None, None, epsilon=0.1)
    assert len(theirs[0]) > 0 and pair_sets(ours) == pair_sets(theirs)


@pytest.mark.parametrize("n,m,classes", op_pml_cases())
@pytest.mark.parametrize("distance", list(OP_DISTANCES))
def test_op_batch_hard_matches_pml(device, n, m, classes, distance):
    skip_inexact_on_cuda(device)
    emb, lab, ref, ref_lab = op_pml_inputs(device, n, m, classes)
    theirs = pml_miners.BatchHardMiner(distance=OP_DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_batch_hard(emb, lab, ref, ref_lab, distance=distance)
    assert as_set(ours) == as_set(theirs)


def test_op_batch_hard_when_the_self_pair_is_least_similar(device):
    """With the unnormalised dot product a row's similarity with itself can be the smallest of its positives':
    (i, i) is no candidate, so the hardest positive is the least similar of the others, never a row dropped for
    it."""
    emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0]], device=device)
    lab = torch.tensor([0, 0, 0, 1, 1], device=device)
    dot = OP_DISTANCES["dot"]()
    ours = ops.mine_batch_hard(emb, lab, None, None, distance="dot")
    assert as_set(ours) == as_set(pml_miners.BatchHardMiner(distance=dot)(emb, lab))
    assert (0, 1, 3) in as_set(ours)  # row 0: dot 2 with row 1 (its own is 1), and 0 with rows 3 and 4


@pytest.mark.parametrize("type_of_triplets", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("distance", list(OP_DISTANCES))
def test_op_triplet_margin_matches_pml(device, type_of_triplets, distance):
    skip_inexact_on_cuda(device)
    emb, lab = embeddings(48, 32), labels(48, 6)
    distance_fn = OP_DISTANCES[distance]()
    miner = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=type_of_triplets, distance=distance_fn)
    ours = ops.mine_triplet_margin(emb, lab, margin=0.2, type_of_triplets=type_of_triplets, distance=distance)
    assert as_set(ours) == as_set(miner(emb, lab))


# ---- the miners -------------------------------------------------------------------------------------------------


def as_sets(out):
    """Pair miners -> {positives}, {negatives}; triplet miners -> {triplets}."""
    rows = [t.tolist() for t in out]
    if len(out) == 4:
        return set(zip(rows[0], rows[1])), set(zip(rows[2], rows[3]))
    return set(zip(*rows))


def assert_same_output(ours, theirs):
    assert len(ours) == len(theirs)
    for t in ours:
        assert t.dtype == torch.int64 and t.dim() == 1
    assert as_sets(ours) == as_sets(theirs)


# (name, n, n_classes, ties, m or None): several sizes, many/few classes, ties, cross-batch references.
CASES = [
    ("small", 24, 4, False, None),
    ("many_classes", 96, 80, False, None),
    ("few_classes", 130, 2, False, None),
    ("ties", 64, 6, True, None),
    ("cross_batch", 40, 5, False, 150),
    ("cross_batch_small_ref", 90, 3, False, 12),
]

MINER_ARGS = [
    ("MultiSimilarityMiner", {}),
    ("MultiSimilarityMiner", {"epsilon": 0.3}),
    ("PairMarginMiner", {}),
    ("PairMarginMiner", {"pos_margin": 0.5, "neg_margin": 0.1}),
    ("BatchHardMiner", {}),
    ("TripletMarginMiner", {}),
    ("TripletMarginMiner", {"margin": 0.05, "type_of_triplets": "hard"}),
    ("TripletMarginMiner", {"margin": 0.3, "type_of_triplets": "semihard"}),
    ("TripletMarginMiner", {"margin": 0.1, "type_of_triplets": "easy"}),
]

DISTANCES = {
    "default": lambda: None,
    "cosine": lambda: pml_distances.CosineSimilarity(),
    "dot normalised": lambda: pml_distances.DotProductSimilarity(),  # CosineSimilarity's matrix: fused as "cosine"
    "l2": lambda: pml_distances.LpDistance(),
    "l2 squared": lambda: pml_distances.LpDistance(power=2),
    "dot unnormalised": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
    "l2 unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False),
    "l2 squared unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2),
}


def run_both(name, kwargs, distance, emb, labels, ref_emb=None, ref_labels=None):
    extra = {} if distance == "default" else {"distance": DISTANCES[distance]()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every option here has the fused path
        ours = getattr(miners, name)(**kwargs, **extra)
    assert ours.fallback is None
    theirs = getattr(pml_miners, name)(**kwargs, **extra)
    return ours(emb, labels, ref_emb, ref_labels), theirs(emb, labels, ref_emb, ref_labels)


@pytest.mark.parametrize("distance", list(DISTANCES))
@pytest.mark.parametrize("name,kwargs", MINER_ARGS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_miner_equals_pml(device, case, name, kwargs, distance):
    skip_inexact_on_cuda(device)
    _, n, n_classes, ties, m = case
    emb, labels = miner_inputs(n, n_classes, ties=ties)
    ref_emb = ref_labels = None
    if m is not None:
        ref_emb, ref_labels = miner_inputs(m, n_classes, seed=1)
    ours, theirs = run_both(name, kwargs, distance, emb, labels, ref_emb, ref_labels)
    assert_same_output(ours, theirs)


@pytest.mark.parametrize("name,kwargs", MINER_ARGS[::2])
def test_miner_self_pair_rule_is_identity(device, name, kwargs):
    """ref_emb that IS embeddings excludes (i, i) like ref_emb=None; an equal copy includes it, as in PML."""
    skip_inexact_on_cuda(device)
    emb, labels = miner_inputs(50, 5)
    same = run_both(name, kwargs, "default", emb, labels, emb, labels)
    copy = run_both(name, kwargs, "default", emb, labels, emb.clone(), labels.clone())
    assert_same_output(*same)
    assert_same_output(*copy)


def test_miner_self_pairs_only_against_a_copy(device):
    """Every positive is selected (pos_margin < 0), so (i, i) shows up exactly when the references are a copy."""
    emb, labels = (t.to(device) for t in miner_inputs(30, 3))
    miner = miners.PairMarginMiner(pos_margin=-1.0)
    self_pairs = lambda out: {(a, p) for a, p in zip(out[0].tolist(), out[1].tolist()) if a == p}  # noqa: E731
    assert self_pairs(miner(emb, labels, emb, labels)) == set()
    assert self_pairs(miner(emb, labels, emb.clone(), labels.clone())) == {(i, i) for i in range(30)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,kwargs", MINER_ARGS[:5])
def test_miner_half_inputs_are_mined_in_float32(device, name, kwargs, dtype):
    """Half embeddings (e.g. from an autocast forward) are upcast: the pairs equal PML's on the float32 values."""
    skip_inexact_on_cuda(device)
    emb, labels = miner_inputs(80, 6)
    with torch.autocast("cpu", dtype=dtype):
        half = torch.nn.functional.linear(emb, torch.eye(16))
    assert half.dtype == dtype
    ours = getattr(miners, name)(**kwargs)(half, labels)
    theirs = getattr(pml_miners, name)(**kwargs)(half.float(), labels)
    assert_same_output(ours, theirs)


def test_unsupported_distance_falls_back_to_pml_with_one_warning():
    emb, labels = miner_inputs(40, 4)
    manhattan = pml_distances.LpDistance(p=1)
    with pytest.warns(FallbackWarning, match="distance"):
        miner = miners.MultiSimilarityMiner(distance=manhattan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later calls stay silent
        ours = miner(emb, labels)
        ours_again = miner(emb, labels)
    theirs = pml_miners.MultiSimilarityMiner(distance=manhattan)(emb, labels)
    assert_same_output(ours, theirs)
    assert_same_output(ours_again, theirs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: miners.BatchHardMiner(distance=pml_distances.LpDistance(p=1)),
        lambda: miners.PairMarginMiner(distance=pml_distances.LpDistance(power=3)),
        lambda: miners.PairMarginMiner(distance=pml_distances.SNRDistance()),
        lambda: miners.TripletMarginMiner(collect_stats=True),
    ],
)
def test_other_pml_options_fall_back(make):
    with pytest.warns(FallbackWarning):
        miner = make()
    emb, labels = miner_inputs(30, 3)
    assert len(miner(emb, labels)) in (3, 4)


def test_copy_with_the_same_labels_object_drops_self_pairs_as_pml():
    """PML's rule: ref_labels *being* labels drops (i, i) from the positives whatever ref_emb is (the detached
    reference call miner(E, L, E.detach(), L)); with ref_labels a copy, (i, i) is a positive again. Both as PML."""
    emb, labels = miner_inputs(30, 3)
    ref = emb.detach().clone()
    self_pairs = lambda out: {(a, p) for a, p in zip(out[0].tolist(), out[1].tolist()) if a == p}  # noqa: E731
    ours = miners.PairMarginMiner(pos_margin=-1.0)(emb, labels, ref, labels)
    theirs = pml_miners.PairMarginMiner(pos_margin=-1.0)(emb, labels, ref, labels)
    assert self_pairs(ours) == self_pairs(theirs) == set()
    assert_same_output(ours, theirs)
    copy = miners.PairMarginMiner(pos_margin=-1.0)(emb, labels, ref, labels.clone())
    assert self_pairs(copy) == {(i, i) for i in range(30)}
    assert_same_output(copy, pml_miners.PairMarginMiner(pos_margin=-1.0)(emb, labels, ref, labels.clone()))


@pytest.mark.parametrize("name", ["MultiSimilarityMiner", "BatchHardMiner", "PairMarginMiner", "TripletMarginMiner"])
def test_fallback_finds_pml_class_when_pml_namespace_is_patched(monkeypatch, name):
    """Adopting the drop-ins by patching `pytorch_metric_learning.miners.X = slade_ext.miners.X`: the fallback
    still builds PML's own X (from its defining module) instead of recursing into ours. monkeypatch undoes it."""
    original = getattr(pml_miners, name)
    monkeypatch.setattr(pml_miners, name, getattr(miners, name))
    distance = pml_distances.LpDistance(p=1)
    with pytest.warns(FallbackWarning):
        ours = getattr(miners, name)(distance=distance)
    assert type(ours.fallback) is original
    emb, labels = miner_inputs(40, 4)
    assert_same_output(ours(emb, labels), original(distance=distance)(emb, labels))
    # the patched name itself, as user code calls it, also works (it is our class, falling back the same way)
    with pytest.warns(FallbackWarning):
        patched = getattr(pml_miners, name)(distance=distance)
    assert type(patched.fallback) is original
