"""Bad input raises a clear exception that names the offending argument, on every device (all op families)."""
import pytest
import torch

from helpers.op_cases import embeddings, labels
from slade_ext import ops


@pytest.fixture
def inputs(device):
    """(EMB, LAB, W) on the test's device."""
    return embeddings(10, 8).to(device), labels(10, 3).to(device), embeddings(4, 8, seed=3).to(device)


MINING_CALLS = [
    lambda e, l, **kw: ops.mine_multi_similarity(e, l, **kw),
    lambda e, l, **kw: ops.mine_pair_margin(e, l, **kw),
    lambda e, l, **kw: ops.mine_batch_hard(e, l, **kw),
    lambda e, l, **kw: ops.mine_triplet_margin(e, l, **kw),
]


@pytest.mark.parametrize("call", MINING_CALLS)
def test_mining_bad_inputs(inputs, call):
    EMB, LAB, _ = inputs
    with pytest.raises(ValueError, match="emb must be 2-D"):
        call(EMB[None], LAB)
    with pytest.raises(ValueError, match="labels has length 9"):
        call(EMB, LAB[:9])
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        call(EMB, LAB.float())
    with pytest.raises(TypeError, match="emb must be a floating tensor"):
        call(EMB.long(), LAB)
    nan = EMB.clone()
    nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="emb contains NaN"):
        call(nan, LAB)
    with pytest.raises(ValueError, match="ref_labels are required"):
        call(EMB, LAB, ref_emb=EMB.clone())
    with pytest.raises(ValueError, match="ref_emb has d = 4"):
        call(EMB, LAB, ref_emb=EMB[:, :4].clone(), ref_labels=LAB)
    with pytest.raises(ValueError, match="ref_labels has length 3"):
        call(EMB, LAB, ref_emb=EMB.clone(), ref_labels=LAB[:3])
    with pytest.raises(ValueError, match='distance must be "cosine" or "l2"'):
        call(EMB, LAB, distance="manhattan")


def test_mining_bad_parameters(inputs):
    EMB, LAB, _ = inputs
    with pytest.raises(ValueError, match="epsilon must be finite"):
        ops.mine_multi_similarity(EMB, LAB, epsilon=float("nan"))
    with pytest.raises(ValueError, match="type_of_triplets must be one of"):
        ops.mine_triplet_margin(EMB, LAB, type_of_triplets="medium")
    with pytest.raises(ValueError, match="max_triplets_per_anchor must be positive"):
        ops.mine_triplet_margin(EMB, LAB, max_triplets_per_anchor=0)
    with pytest.raises(ValueError, match="pos_margin must be finite"):
        ops.mine_pair_margin(EMB, LAB, pos_margin=float("inf"))


def test_basis_bad_inputs(inputs):
    EMB, LAB, W = inputs
    with pytest.raises(ValueError, match="basis has 5 columns"):
        ops.basis_similarity(EMB, W[:, :5])
    with pytest.raises(ValueError, match="emb must be \\[N, d\\] or batched"):
        ops.basis_similarity(EMB[None, None], W)
    with pytest.raises(ValueError, match="ref_emb has batch size 2"):
        ops.basis_similarity(EMB[None].expand(3, -1, -1), W, EMB[None].expand(2, -1, -1))
    bad_w = W.clone()
    bad_w[0, 0] = float("inf")
    with pytest.raises(ValueError, match="basis contains NaN or Inf"):
        ops.basis_similarity(EMB, bad_w)
    with pytest.raises(ValueError, match="ref_emb and ref_labels must be given together"):
        ops.basis_pair_stats(EMB, W, LAB, ref_emb=EMB.clone())
    with pytest.raises(ValueError, match="labels has length 4"):
        ops.basis_pair_stats(EMB, W, LAB[:4])


def test_selection_bad_inputs(inputs):
    EMB, LAB, W = inputs
    with pytest.raises(ValueError, match='mode="agree" needs pseudo_labels'):
        ops.select_confident_pairs(EMB, W, 0.5, 0.0, mode="agree")
    with pytest.raises(ValueError, match='mode must be "literal" or "agree"'):
        ops.select_confident_pairs(EMB, W, 0.5, 0.0, mode="strict")
    with pytest.raises(ValueError, match="t_pos must be finite"):
        ops.select_confident_pairs(EMB, W, float("nan"), 0.0)
    with pytest.raises(ValueError, match="pseudo_labels has length 3"):
        ops.select_confident_pairs(EMB, W, 0.5, 0.0, pseudo_labels=LAB[:3])


def test_tensors_on_different_devices_are_refused(device):
    if device == "cpu":
        pytest.skip("needs a second device type (CUDA) to mix with the CPU")
    emb, lab = embeddings(10, 8), labels(10, 3)
    with pytest.raises(ValueError, match="labels is on cpu but the embeddings are on cuda"):
        ops.mine_batch_hard(emb.to(device), lab)
    with pytest.raises(ValueError, match="ref_emb is on cpu but the embeddings are on cuda"):
        ops.mine_batch_hard(emb.to(device), lab.to(device), emb, lab.to(device))
