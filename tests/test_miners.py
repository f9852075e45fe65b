"""slade_ext.miners against their pytorch-metric-learning twins: same pairs (as sets), same self-pair rule, the PML
fallback, input errors, and ConfidentPairMiner against the reference selection."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from slade_ext import miners, reference
from slade_ext._compat import FallbackWarning
from slade_ext.basis import FeatureBasis

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")


def make_inputs(n, n_classes, d=16, seed=0, ties=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    if ties:  # every row duplicated: exactly tied similarities
        emb = torch.cat([emb[: (n + 1) // 2]] * 2)[:n].contiguous()
    return emb.to(dtype), torch.randint(0, n_classes, (n,), generator=g)


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
    "l2": lambda: pml_distances.LpDistance(),
}


def run_both(name, kwargs, distance, emb, labels, ref_emb=None, ref_labels=None):
    extra = {} if distance == "default" else {"distance": DISTANCES[distance]()}
    ours = getattr(miners, name)(**kwargs, **extra)
    theirs = getattr(pml_miners, name)(**kwargs, **extra)
    return ours(emb, labels, ref_emb, ref_labels), theirs(emb, labels, ref_emb, ref_labels)


@pytest.mark.parametrize("distance", list(DISTANCES))
@pytest.mark.parametrize("name,kwargs", MINER_ARGS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_miner_equals_pml(case, name, kwargs, distance):
    _, n, n_classes, ties, m = case
    emb, labels = make_inputs(n, n_classes, ties=ties)
    ref_emb = ref_labels = None
    if m is not None:
        ref_emb, ref_labels = make_inputs(m, n_classes, seed=1)
    ours, theirs = run_both(name, kwargs, distance, emb, labels, ref_emb, ref_labels)
    assert_same_output(ours, theirs)


@pytest.mark.parametrize("name,kwargs", MINER_ARGS[::2])
def test_self_pair_rule_is_identity(name, kwargs):
    """ref_emb that IS embeddings excludes (i, i) like ref_emb=None; an equal copy includes it, as in PML."""
    emb, labels = make_inputs(50, 5)
    same = run_both(name, kwargs, "default", emb, labels, emb, labels)
    copy = run_both(name, kwargs, "default", emb, labels, emb.clone(), labels.clone())
    assert_same_output(*same)
    assert_same_output(*copy)


def test_self_pairs_only_against_a_copy():
    """Every positive is selected (pos_margin < 0), so (i, i) shows up exactly when the references are a copy."""
    emb, labels = make_inputs(30, 3)
    miner = miners.PairMarginMiner(pos_margin=-1.0)
    self_pairs = lambda out: {(a, p) for a, p in zip(out[0].tolist(), out[1].tolist()) if a == p}
    assert self_pairs(miner(emb, labels, emb, labels)) == set()
    assert self_pairs(miner(emb, labels, emb.clone(), labels.clone())) == {(i, i) for i in range(30)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,kwargs", MINER_ARGS[:5])
def test_half_inputs_are_mined_in_float32(name, kwargs, dtype):
    """Half embeddings (e.g. from an autocast forward) are upcast: the pairs equal PML's on the float32 values."""
    emb, labels = make_inputs(80, 6)
    with torch.autocast("cpu", dtype=dtype):
        half = torch.nn.functional.linear(emb, torch.eye(16))
    assert half.dtype == dtype
    ours = getattr(miners, name)(**kwargs)(half, labels)
    theirs = getattr(pml_miners, name)(**kwargs)(half.float(), labels)
    assert_same_output(ours, theirs)


def test_unsupported_distance_falls_back_to_pml_with_one_warning():
    emb, labels = make_inputs(40, 4)
    with pytest.warns(FallbackWarning, match="distance"):
        miner = miners.MultiSimilarityMiner(distance=pml_distances.DotProductSimilarity())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later calls stay silent
        ours = miner(emb, labels)
        ours_again = miner(emb, labels)
    theirs = pml_miners.MultiSimilarityMiner(distance=pml_distances.DotProductSimilarity())(emb, labels)
    assert_same_output(ours, theirs)
    assert_same_output(ours_again, theirs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: miners.BatchHardMiner(distance=pml_distances.LpDistance(power=2)),
        lambda: miners.PairMarginMiner(distance=pml_distances.LpDistance(normalize_embeddings=False)),
        lambda: miners.TripletMarginMiner(collect_stats=True),
    ],
)
def test_other_pml_options_fall_back(make):
    with pytest.warns(FallbackWarning):
        miner = make()
    emb, labels = make_inputs(30, 3)
    assert len(miner(emb, labels)) in (3, 4)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m(torch.randn(10), torch.zeros(10, dtype=torch.long)), "embeddings"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(9, dtype=torch.long)), "labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10)), "labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(5, 4)), "ref_labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(5, 3),
                     torch.zeros(5, dtype=torch.long)), "ref_emb"),
        (lambda m: m(torch.full((10, 4), float("nan")), torch.zeros(10, dtype=torch.long)), "NaN"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(miners.MultiSimilarityMiner())


def test_bad_triplet_type_names_the_argument():
    with pytest.raises(ValueError, match="type_of_triplets"):
        miners.TripletMarginMiner(type_of_triplets="hardest")


# ---- ConfidentPairMiner -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_confident_pairs_equal_reference(mode):
    emb, pseudo = make_inputs(70, 5)
    basis = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    ours = miners.ConfidentPairMiner(basis, t_pos=0.3, t_neg=-0.2, mode=mode)(emb, pseudo)
    expected = reference.select_confident_pairs(emb, basis, 0.3, -0.2, pseudo, mode)
    assert_same_output(ours, expected)
    assert len(ours[0]) > 0 and len(ours[2]) > 0


def test_confident_pairs_from_feature_basis_thresholds():
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


def test_imports_and_mines_without_pml():
    code = (
        "import sys; sys.modules['pytorch_metric_learning'] = None\n"
        "import torch\n"
        "from slade_ext import miners, losses\n"
        "emb, labels = torch.randn(20, 8), torch.arange(20) % 4\n"
        "assert len(miners.MultiSimilarityMiner()(emb, labels)) == 4\n"
        "assert losses.ContrastiveLoss()(emb, labels).ndim == 0\n"
        "try:\n"
        "    miners.BatchHardMiner(distance=object())\n"
        "except ValueError as e:\n"
        "    assert 'not installed' in str(e)\n"
        "else:\n"
        "    raise SystemExit('expected ValueError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
