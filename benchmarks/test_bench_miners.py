"""Miners: slade_ext vs pytorch-metric-learning vs the pure-PyTorch reference, same inputs, same pairs."""
from __future__ import annotations

import pytest

from cases import (CROSS, DISTANCE_OPTIONS, FLOOR, IMPLS, SQUARE, TRIPLET, UNCLUSTERED, clustered, cross_batch,
                   expect_same_pairs, matrix_products, unclustered, unnormalised_distance)

from slade_ext import miners, reference

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

# name -> (slade_ext class, PML class, reference function, kwargs); distances are each class's default.
MINERS = {
    "MultiSimilarityMiner": (reference.mine_multi_similarity, {}, "cosine"),
    "BatchHardMiner": (reference.mine_batch_hard, {}, "l2"),
    "PairMarginMiner": (reference.mine_pair_margin, {}, "l2"),
}


def impl_fn(name, impl, kwargs, distance, emb, labels, ref_emb=None, ref_labels=None):
    if impl == "slade_ext":
        miner = getattr(miners, name)(**kwargs)
        return lambda: miner(emb, labels, ref_emb, ref_labels)
    if impl == "pml":
        miner = getattr(pml_miners, name)(**kwargs)
        return lambda: miner(emb, labels, ref_emb, ref_labels)
    ref_fn = MINERS[name][0] if name in MINERS else reference.mine_triplet_margin
    return lambda: ref_fn(emb, labels, ref_emb, ref_labels, **kwargs, distance=distance)


def run_miner(run_case, group, name, impl, kwargs, distance, *inputs):
    expected = impl_fn(name, "slade_ext", kwargs, distance, *inputs)()
    check = None if impl == "slade_ext" else expect_same_pairs(expected)
    run_case(group, impl, impl_fn(name, impl, kwargs, distance, *inputs), check)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SQUARE)
@pytest.mark.parametrize("name", list(MINERS))
def test_miner(run_case, name, n, impl):
    _, kwargs, distance = MINERS[name]
    run_miner(run_case, f"{name} N={n}", name, impl, kwargs, distance, *clustered(n))


@pytest.mark.parametrize("impl", [FLOOR])
@pytest.mark.parametrize("n", SQUARE)
@pytest.mark.parametrize("name", list(MINERS))
def test_miner_matrix_products(run_case, name, n, impl):
    """The distance GEMM alone, in the miner's group: PML's time over it is the most any exact miner can gain."""
    emb = clustered(n)[0]
    run_case(f"{name} N={n}", impl, matrix_products(emb, emb, MINERS[name][2]))


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # the output is most of N*M pairs
@pytest.mark.parametrize("n", UNCLUSTERED)
@pytest.mark.parametrize("name", list(MINERS))
def test_miner_unclustered(run_case, name, n, impl):
    _, kwargs, distance = MINERS[name]
    run_miner(run_case, f"{name} N={n} (unclustered)", name, impl, kwargs, distance, *unclustered(n))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,m", CROSS)
@pytest.mark.parametrize("name", ["MultiSimilarityMiner", "BatchHardMiner"])
def test_miner_cross_batch(run_case, name, n, m, impl):
    _, kwargs, distance = MINERS[name]
    emb, labels, ref_emb, ref_labels = cross_batch(n, m)
    run_miner(run_case, f"{name} {n}x{m}", name, impl, kwargs, distance, emb, labels, ref_emb, ref_labels)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", TRIPLET)
def test_triplet_miner(run_case, n, impl):
    """PML and the reference build N*M*M tensors here, so the sizes stop at N=1024."""
    kwargs = {"margin": 0.2, "type_of_triplets": "semihard"}
    run_miner(run_case, f"TripletMarginMiner(semihard) N={n}", "TripletMarginMiner", impl, kwargs, "l2", *clustered(n))


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # most of an anchor's (positive, negative) are semihard
@pytest.mark.parametrize("n", TRIPLET[-1:])
def test_triplet_miner_unclustered(run_case, n, impl):
    kwargs = {"margin": 0.2, "type_of_triplets": "semihard"}
    run_miner(run_case, f"TripletMarginMiner(semihard) N={n} (unclustered)", "TripletMarginMiner", impl, kwargs, "l2",
              *unclustered(n))


# Unnormalised embeddings (PML's normalize_embeddings=False) on the fused path: the distance each class is timed with
UNNORMALISED = {"MultiSimilarityMiner": "dot", "BatchHardMiner": "L2", "PairMarginMiner": "L2"}


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # the reference takes distance names, not PML objects
@pytest.mark.parametrize("n", DISTANCE_OPTIONS)
@pytest.mark.parametrize("name", list(UNNORMALISED))
def test_miner_unnormalised(run_case, name, n, impl):
    kind = UNNORMALISED[name]
    assert getattr(miners, name)(distance=unnormalised_distance(kind)).fallback is None  # the fused path, not PML's
    run_miner(run_case, f"{name}(unnormalised {kind}) N={n}", name, impl, {"distance": unnormalised_distance(kind)},
              None, *clustered(n))
