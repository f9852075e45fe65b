"""Mining ops equal the pure-PyTorch reference exactly (same pairs, same order) on random inputs and edge cases."""
import pytest
import torch

from helpers.op_cases import SHAPES, assert_same_indices, case_inputs, embeddings, labels, non_contiguous, with_ties
from slade_ext import ops, reference

MINERS = {
    "multi_similarity": dict(epsilon=0.1),
    "pair_margin": dict(pos_margin=0.2, neg_margin=0.1),
    "batch_hard": dict(),
    "triplet_margin": dict(margin=0.2, type_of_triplets="all"),
}


def run_both(name, *args, **kwargs):
    op = getattr(ops, f"mine_{name}")
    ref = getattr(reference, f"mine_{name}")
    return op(*args, **kwargs), ref(*args, **kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_equals_reference(miner, distance, shape):
    emb, lab, ref_emb, ref_lab = case_inputs(*shape)
    got, want = run_both(miner, emb, lab, ref_emb, ref_lab, distance=distance, **MINERS[miner])
    assert_same_indices(got, want)


@pytest.mark.parametrize("miner", list(MINERS))
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_miner_fresh_random_inputs(miner, seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 150, (1,), generator=g))
    emb = embeddings(n, int(torch.randint(2, 40, (1,), generator=g)), seed)
    lab = labels(n, int(torch.randint(1, 20, (1,), generator=g)), seed)
    got, want = run_both(miner, emb, lab, **MINERS[miner])
    assert_same_indices(got, want)


@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_ties(miner):
    emb = with_ties(embeddings(40))
    lab = labels(40, 4)
    got, want = run_both(miner, emb, lab, **MINERS[miner])
    assert_same_indices(got, want)


def test_batch_hard_ties_pick_smallest_index():
    # Anchor 0 has two identical positives (1, 2) and two identical negatives (3, 4).
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.1], [1.0, 0.1]])
    lab = torch.tensor([0, 0, 0, 1, 1])
    a, p, n = ops.mine_batch_hard(emb, lab)
    assert (int(a[0]), int(p[0]), int(n[0])) == (0, 1, 3)


@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_label_minus_one_is_an_ordinary_label(miner):
    lab = labels(50, 3) - 1  # labels in {-1, 0, 1}: PML gives -1 no special meaning
    emb = embeddings(50)
    got, want = run_both(miner, emb, lab, **MINERS[miner])
    assert_same_indices(got, want)
    assert any(t.numel() for t in got)


@pytest.mark.parametrize("miner", list(MINERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_miner_dtypes(miner, dtype):
    emb = embeddings(60, dtype=dtype)
    lab = labels(60, 5)
    got, want = run_both(miner, emb, lab, **MINERS[miner])
    assert_same_indices(got, want)


@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_non_contiguous_and_int32_labels(miner):
    emb = embeddings(45)
    lab = labels(45, 5)
    got = getattr(ops, f"mine_{miner}")(non_contiguous(emb), lab.to(torch.int32), **MINERS[miner])
    want = getattr(reference, f"mine_{miner}")(emb, lab, **MINERS[miner])
    assert_same_indices(got, want)


@pytest.mark.parametrize("miner", list(MINERS))
def test_miner_empty_inputs(miner):
    emb = torch.zeros(0, 8)
    lab = torch.zeros(0, dtype=torch.long)
    got = getattr(ops, f"mine_{miner}")(emb, lab, **MINERS[miner])
    assert all(t.numel() == 0 and t.dtype == torch.int64 for t in got)
    # An empty reference set: nothing to pair with.
    got = getattr(ops, f"mine_{miner}")(embeddings(5, 8), labels(5, 2), emb, lab, **MINERS[miner])
    assert all(t.numel() == 0 for t in got)


@pytest.mark.parametrize("type_of_triplets", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_triplet_types(type_of_triplets, distance):
    emb, lab = embeddings(50), labels(50, 5)
    got, want = run_both("triplet_margin", emb, lab, margin=0.3, type_of_triplets=type_of_triplets, distance=distance)
    assert_same_indices(got, want)


@pytest.mark.parametrize("cap", [1, 7, 100])
def test_triplet_cap_keeps_first_k_per_anchor(cap):
    emb, lab = embeddings(40), labels(40, 4)
    got, want = run_both("triplet_margin", emb, lab, max_triplets_per_anchor=cap)
    assert_same_indices(got, want)
    assert torch.bincount(got[0]).max() <= cap


def test_self_pair_rule_follows_identity():
    emb, lab = embeddings(20), labels(20, 3)
    same_object = ops.mine_pair_margin(emb, lab, emb, lab, pos_margin=2.0, neg_margin=-2.0)
    copy = ops.mine_pair_margin(emb, lab, emb.clone(), lab.clone(), pos_margin=2.0, neg_margin=-2.0)
    # With a copy as reference set, (i, i) is a positive pair; with the same object it is excluded.
    assert copy[0].numel() == same_object[0].numel() + 20
    assert not torch.any(same_object[0] == same_object[1])


def test_outputs_span_several_tiles():
    # M = 5000 refs: the CPU tile budget (4M values) holds 838 rows, so 2000 rows need 3 tiles.
    emb, lab = embeddings(2000, 8), labels(2000, 50)
    ref_emb, ref_lab = embeddings(5000, 8, seed=9), labels(5000, 50, seed=9)
    for miner in ("multi_similarity", "batch_hard"):
        got, want = run_both(miner, emb, lab, ref_emb, ref_lab, **MINERS[miner])
        assert_same_indices(got, want)
