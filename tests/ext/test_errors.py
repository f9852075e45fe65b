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
    with pytest.raises(ValueError, match="distance must be one of .*got \"manhattan\""):
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


# ---- arguments named by the Python layer (ops wrappers, drop-in modules, FeatureBasis) ---------------------------

NAN, INF = float("nan"), float("inf")


def test_mixed_float_dtypes_name_the_argument(inputs):
    from slade_ext import loss_ops, losses, miners

    EMB, LAB, W = inputs
    ref = EMB.double()
    for call in MINING_CALLS:
        with pytest.raises(TypeError, match="ref_emb has dtype torch.float64 but the embeddings have torch.float32"):
            call(EMB, LAB, ref_emb=ref, ref_labels=LAB)
    with pytest.raises(TypeError, match="ref_emb has dtype torch.float64"):
        ops.basis_similarity(EMB, W, ref)
    with pytest.raises(TypeError, match="ref_emb has dtype torch.float64"):
        loss_ops.contrastive_loss_rows(EMB, LAB, ref, LAB.clone())
    with pytest.raises(TypeError, match="ref_emb has dtype torch.float64"):
        miners.PairMarginMiner()(EMB, LAB, ref, LAB)
    with pytest.raises(TypeError, match="ref_emb has dtype torch.float64"):
        losses.ContrastiveLoss()(EMB, LAB, None, ref, LAB)


def test_labels_on_another_device_name_the_argument(inputs):
    """The meta device stands in for a second device on CPU-only machines: the check runs before any dispatch."""
    EMB, LAB, W = inputs
    for call in MINING_CALLS:
        with pytest.raises(ValueError, match="labels is on meta but the embeddings are on"):
            call(EMB, LAB.to("meta"))
        with pytest.raises(ValueError, match="ref_labels is on meta"):
            call(EMB, LAB, ref_emb=EMB.clone(), ref_labels=LAB.to("meta"))
    with pytest.raises(ValueError, match="labels is on meta"):
        ops.basis_pair_stats(EMB, W, LAB.to("meta"))
    with pytest.raises(ValueError, match="pseudo_labels is on meta"):
        ops.select_confident_pairs(EMB, W, 0.5, 0.0, pseudo_labels=LAB.to("meta"), mode="agree")


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda m, l, b: m.MultiSimilarityMiner(epsilon=NAN), "epsilon"),
        (lambda m, l, b: m.PairMarginMiner(pos_margin=INF), "pos_margin"),
        (lambda m, l, b: m.PairMarginMiner(neg_margin=NAN), "neg_margin"),
        (lambda m, l, b: m.TripletMarginMiner(margin=NAN), "margin"),
        (lambda m, l, b: m.ConfidentPairMiner(torch.eye(4), t_pos=NAN, t_neg=0.0), "t_pos"),
        (lambda m, l, b: m.ConfidentPairMiner(torch.eye(4), t_pos=0.5, t_neg=-INF), "t_neg"),
        (lambda m, l, b: l.MultiSimilarityLoss(alpha=NAN), "alpha"),
        (lambda m, l, b: l.MultiSimilarityLoss(beta=INF), "beta"),
        (lambda m, l, b: l.MultiSimilarityLoss(alpha=0), "alpha"),
        (lambda m, l, b: l.MultiSimilarityLoss(base=NAN), "base"),
        (lambda m, l, b: l.ContrastiveLoss(pos_margin=NAN), "pos_margin"),
        (lambda m, l, b: l.ContrastiveLoss(neg_margin=INF), "neg_margin"),
        (lambda m, l, b: b.FeatureBasis(3, 4, margin=NAN), "margin"),
        (lambda m, l, b: b.FeatureBasis(3, 4, lambda_var=INF), "lambda_var"),
        (lambda m, l, b: b.FeatureBasis(3, 4, lambda_var=-1.0), "lambda_var"),
        (lambda m, l, b: b.FeatureBasis(3, 4, beta=NAN), "beta"),
        (lambda m, l, b: b.FeatureBasis(3, 4, ce_scale=INF), "ce_scale"),
    ],
)
def test_constructor_numbers_must_be_finite(make, name):
    from slade_ext import basis, losses, miners

    with pytest.raises(ValueError, match=f"^{name} must be"):
        make(miners, losses, basis)


def test_constructor_numbers_must_be_numbers():
    from slade_ext import losses, miners

    with pytest.raises(TypeError, match="epsilon must be a real number, got str"):
        miners.MultiSimilarityMiner(epsilon="0.1")
    with pytest.raises(TypeError, match="alpha must be a real number, got bool"):
        losses.MultiSimilarityLoss(alpha=True)


def test_ce_loss_refuses_non_finite_embeddings(inputs):
    from slade_ext.basis import FeatureBasis

    EMB, LAB, _ = inputs
    bad = EMB.clone()
    bad[2, 1] = NAN
    with pytest.raises(ValueError, match="emb contains NaN or Inf"):
        FeatureBasis(3, 8).to(EMB.device).ce_loss(bad, LAB)


def test_shared_labels_object_needs_as_many_references(inputs):
    """ref_labels *being* labels with a ref_emb of another length: PML's check_shapes refuses it, and so do we."""
    from slade_ext import miners

    EMB, LAB, _ = inputs
    with pytest.raises(ValueError, match="ref_labels \\(the labels object\\) has 10 entries but ref_emb has 4 rows"):
        miners.BatchHardMiner()(EMB, LAB, EMB[:4].clone(), LAB)
