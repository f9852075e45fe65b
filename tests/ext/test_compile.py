"""torch.compile(fullgraph=True) traces the drop-in losses and FeatureBasis's losses, and the compiled values and
gradients equal eager's exactly (aot_eager: the same kernels run, so equality is bitwise)."""
from __future__ import annotations

import pytest
import torch

from slade_ext import losses, miners
from slade_ext.basis import FeatureBasis


def inputs(n=40, d=16, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def value_and_grad(fn, emb, *args):
    emb = emb.clone().requires_grad_(True)
    out = fn(emb, *args)
    out.backward()
    return out.detach(), emb.grad


@pytest.mark.parametrize("make", [losses.MultiSimilarityLoss, losses.ContrastiveLoss])
@pytest.mark.parametrize("labels_case", ["classes", "all_distinct", "one_pair"])
def test_losses_compile_fullgraph_and_equal_eager(make, labels_case):
    emb, lab = inputs()
    if labels_case == "all_distinct":  # no positive pair: PML's zero-loss rule only on one side
        lab = torch.arange(emb.shape[0])
    elif labels_case == "one_pair":  # N = 2, one positive pair and no negatives: PML's "too few pairs" zero
        emb, lab = emb[:2], torch.tensor([3, 3])
    loss = make()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_value, eager_grad = value_and_grad(loss, emb, lab)
    value, grad = value_and_grad(compiled, emb, lab)
    assert torch.equal(value, eager_value)
    assert torch.equal(grad, eager_grad)


def test_feature_basis_losses_compile_fullgraph_and_equal_eager():
    emb, lab = inputs()
    lab[::4] = -1  # unknown pseudo labels / unlabeled samples
    eager, traced = FeatureBasis(5, 16), FeatureBasis(5, 16)
    traced.load_state_dict(eager.state_dict())
    sd = torch.compile(traced.sd_loss, fullgraph=True, backend="aot_eager")
    ce = torch.compile(traced.ce_loss, fullgraph=True, backend="aot_eager")
    for step in range(3):  # the first step seeds the averages, the next ones move them
        assert torch.equal(sd(emb, lab), eager.sd_loss(emb, lab)), step
        for name in ("mu_pos", "var_pos", "mu_neg", "var_neg", "num_updates"):
            assert torch.equal(getattr(traced, name), getattr(eager, name)), name
    assert torch.equal(ce(emb, lab), eager.ce_loss(emb, lab))
    none_labeled = torch.full_like(lab, -1)
    assert torch.equal(ce(emb, none_labeled), eager.ce_loss(emb, none_labeled))
    assert float(eager.ce_loss(emb, none_labeled).detach()) == 0.0


def test_ce_loss_equals_cross_entropy_on_the_labeled_rows():
    emb, lab = inputs()
    lab[::3] = -1
    basis = FeatureBasis(5, 16)
    keep = lab >= 0
    expected = torch.nn.functional.cross_entropy(basis.logits(emb[keep]), lab[keep])
    torch.testing.assert_close(basis.ce_loss(emb, lab), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode,quantiles", [("literal", None), ("agree", None), ("veto", None),
                                            ("agree", (0.3, 0.7))])
def test_confident_pair_miner_on_a_feature_basis_compiles_fullgraph(mode, quantiles):
    """The basis's thresholds are 0-dim buffers handed to the op unread: one graph, eager's pairs, before the
    first update (nothing selected) and after it."""
    emb, lab = inputs(n=60, classes=3)
    basis = FeatureBasis(5, 16)
    miner = miners.ConfidentPairMiner(basis, mode=mode, quantiles=quantiles)
    compiled = torch.compile(miner, fullgraph=True, backend="aot_eager")
    for step in range(2):
        expected = miner(emb, lab)
        got = compiled(emb, lab)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), step
        assert (expected[0].numel() + expected[2].numel() > 0) == (step > 0), step  # nothing before the statistics
        basis.sd_loss(emb, lab)
        with torch.no_grad():  # a random basis may have mu+ <= mu- (nothing selected): thresholds that select some
            basis.mu_pos.fill_(0.3)
            basis.mu_neg.fill_(-0.3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: miners.MultiSimilarityMiner(),
        lambda: miners.PairMarginMiner(),
        lambda: miners.BatchHardMiner(),
        lambda: miners.TripletMarginMiner(margin=0.1),
        lambda: miners.ConfidentPairMiner(torch.randn(5, 16), t_pos=0.5, t_neg=0.0),
    ],
)
def test_miners_compile_fullgraph_and_equal_eager(make):
    emb, lab = inputs()
    miner = make()
    compiled = torch.compile(miner, fullgraph=True, backend="aot_eager")
    for got, expected in zip(compiled(emb, lab), miner(emb, lab)):
        assert torch.equal(got, expected)
