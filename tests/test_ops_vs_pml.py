"""The mining ops select the same pairs/triplets as pytorch-metric-learning's miners (compared as sets)."""
import pytest
import torch

from helpers.op_cases import embeddings, labels
from slade_ext import ops

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

DISTANCES = {"cosine": pml_distances.CosineSimilarity, "l2": pml_distances.LpDistance}


def as_set(indices):
    return set(zip(*[t.tolist() for t in indices]))


def pair_sets(out):
    return as_set(out[:2]), as_set(out[2:])


def cases():
    # (n, m or None, classes): self-comparison and cross-batch with a larger reference set.
    return [(64, None, 8), (128, None, 40), (32, 256, 8), (100, None, 2)]


@pytest.mark.parametrize("n,m,classes", cases())
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_multi_similarity_matches_pml(n, m, classes, distance):
    emb, lab = embeddings(n, 32), labels(n, classes)
    ref, ref_lab = (None, None) if m is None else (embeddings(m, 32, seed=5), labels(m, classes, seed=5))
    pml = pml_miners.MultiSimilarityMiner(epsilon=0.1, distance=DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_multi_similarity(emb, lab, ref, ref_lab, epsilon=0.1, distance=distance)
    assert pair_sets(ours) == pair_sets(pml)


@pytest.mark.parametrize("n,m,classes", cases())
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_pair_margin_matches_pml(n, m, classes, distance):
    emb, lab = embeddings(n, 32), labels(n, classes)
    ref, ref_lab = (None, None) if m is None else (embeddings(m, 32, seed=5), labels(m, classes, seed=5))
    margins = (0.2, 0.1) if distance == "cosine" else (1.2, 1.4)
    pml = pml_miners.PairMarginMiner(*margins, distance=DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_pair_margin(emb, lab, ref, ref_lab, *margins, distance=distance)
    assert pair_sets(ours) == pair_sets(pml)


@pytest.mark.parametrize("n,m,classes", cases())
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_batch_hard_matches_pml(n, m, classes, distance):
    emb, lab = embeddings(n, 32), labels(n, classes)
    ref, ref_lab = (None, None) if m is None else (embeddings(m, 32, seed=5), labels(m, classes, seed=5))
    pml = pml_miners.BatchHardMiner(distance=DISTANCES[distance]())(emb, lab, ref, ref_lab)
    ours = ops.mine_batch_hard(emb, lab, ref, ref_lab, distance=distance)
    assert as_set(ours) == as_set(pml)


@pytest.mark.parametrize("type_of_triplets", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_triplet_margin_matches_pml(type_of_triplets, distance):
    emb, lab = embeddings(48, 32), labels(48, 6)
    miner = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=type_of_triplets, distance=DISTANCES[distance]())
    ours = ops.mine_triplet_margin(emb, lab, margin=0.2, type_of_triplets=type_of_triplets, distance=distance)
    assert as_set(ours) == as_set(miner(emb, lab))
