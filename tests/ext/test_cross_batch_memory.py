"""CrossBatchMemory with slade_ext's losses and miners equals pytorch-metric-learning's CrossBatchMemory around PML's
own: the memory bank is the reference set, the self comparisons of the enqueued batch are dropped, the queue wraps
around, and `enqueue_mask` splits queries from what is enqueued. slade_ext's CrossBatchMemory runs its fused losses
over the memory without pair lists; PML's around slade_ext's classes works too (they take PML's lists)."""
from __future__ import annotations

import warnings
import zlib

import pytest
import torch

from slade_ext import cross_batch_memory, losses, miners
from slade_ext._compat import FallbackWarning

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

D, MEMORY, BATCH = 16, 40, 12  # 4 batches of 12 in a memory of 40: the fourth wraps around
LOSSES = ["MultiSimilarityLoss", "ContrastiveLoss", "NTXentLoss", "TripletMarginLoss"]


def _steps(seed_key, n_steps, device, dtype=torch.float64, batch=BATCH, n_labels=4):
    g = torch.Generator().manual_seed(zlib.crc32(repr(seed_key).encode()))
    for _ in range(n_steps):
        emb = torch.randn(batch, D, generator=g, dtype=dtype).to(device).requires_grad_()
        yield emb, torch.randint(0, n_labels, (batch,), generator=g).to(device)


def _assert_same_steps(ours, theirs, key, device, masked=False, n_steps=None, given_tuple=None, rtol=1e-9,
                       dtype=torch.float64):
    """Feed both the same batches (enough to wrap around) and compare losses, gradients and the memory."""
    n_steps = n_steps or (12 if masked else 5)  # a masked step enqueues 4 of its 12 rows
    for emb, labels in _steps(key, n_steps, device, dtype):
        mask = (torch.arange(BATCH, device=device) % 3 == 0) if masked else None
        tuple_ = given_tuple(labels) if given_tuple else None
        expected = theirs(emb, labels, tuple_, enqueue_mask=mask)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)
            got = ours(emb, labels, tuple_, enqueue_mask=mask)
        torch.testing.assert_close(got, expected.to(got.dtype), rtol=rtol, atol=rtol)
        if expected.requires_grad:
            want, = torch.autograd.grad(expected, emb)
            have, = torch.autograd.grad(got, emb)
            torch.testing.assert_close(have, want, rtol=rtol * 100, atol=rtol)
        torch.testing.assert_close(ours.embedding_memory, theirs.embedding_memory.to(dtype), rtol=0, atol=0)
        assert ours.queue_idx == theirs.queue_idx
    assert ours.has_been_filled and theirs.has_been_filled


def _pair(loss_name, miner_name=None, memory=MEMORY):
    ours = losses.CrossBatchMemory(getattr(losses, loss_name)(), D, memory_size=memory,
                                   miner=getattr(miners, miner_name)() if miner_name else None)
    theirs = pml_losses.CrossBatchMemory(getattr(pml_losses, loss_name)(), D, memory_size=memory,
                                         miner=getattr(pml_miners, miner_name)() if miner_name else None)
    return ours, theirs


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("loss_name", LOSSES)
def test_fused_path_equals_pml_and_lists_no_pairs(loss_name, masked, device, monkeypatch):
    ours, theirs = _pair(loss_name)
    assert ours.fused()

    def no_lists(*args):
        raise AssertionError("the fused path listed the (batch x memory) pairs")

    monkeypatch.setattr(cross_batch_memory, "all_pairs", no_lists)
    _assert_same_steps(ours, theirs.to(device), (loss_name, masked), device, masked)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("miner_name", ["MultiSimilarityMiner", "PairMarginMiner", "BatchHardMiner",
                                        "TripletMarginMiner"])
@pytest.mark.parametrize("loss_name", LOSSES)
def test_with_a_miner_equals_pml(loss_name, miner_name, masked, device):
    ours, theirs = _pair(loss_name, miner_name)
    _assert_same_steps(ours, theirs.to(device), (loss_name, miner_name, masked), device, masked)


@pytest.mark.parametrize("tuple_form", [3, 4])
@pytest.mark.parametrize("loss_name", ["ContrastiveLoss", "NTXentLoss", "TripletMarginLoss"])
def test_a_given_indices_tuple_is_added_to_the_pairs_as_pml_does(loss_name, tuple_form):
    # (the mask-based MultiSimilarityLoss refuses such tuples in both: a pair listed as positive and negative)
    def given(labels):  # a few of the batch's own pairs, in the tuple form under test
        a, p, n = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
        return (a, p, n) if tuple_form == 3 else (a, p, a, n)

    ours, theirs = _pair(loss_name)
    _assert_same_steps(ours, theirs, (loss_name, tuple_form), "cpu", given_tuple=given)


@pytest.mark.parametrize("loss_name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_pml_losses_inside_slade_ext_memory_equal_pml_memory(loss_name):
    """Any loss PML's CrossBatchMemory supports works inside ours: the pairs are listed, self pairs dropped in
    O(pairs)."""
    ours = losses.CrossBatchMemory(getattr(pml_losses, loss_name)(), D, memory_size=MEMORY)
    theirs = pml_losses.CrossBatchMemory(getattr(pml_losses, loss_name)(), D, memory_size=MEMORY)
    assert not ours.fused()
    _assert_same_steps(ours, theirs, (loss_name, "pml inside"), "cpu")


@pytest.mark.parametrize("loss_name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_pml_memory_around_slade_ext_losses_equals_pml(loss_name):
    ours = pml_losses.CrossBatchMemory(getattr(losses, loss_name)(), D, memory_size=MEMORY,
                                       miner=miners.MultiSimilarityMiner())
    theirs = pml_losses.CrossBatchMemory(getattr(pml_losses, loss_name)(), D, memory_size=MEMORY,
                                         miner=pml_miners.MultiSimilarityMiner())
    _assert_same_steps(ours, theirs, (loss_name, "around ours"), "cpu")


@pytest.mark.parametrize("loss_name", LOSSES)
def test_fused_path_equals_the_listed_path(loss_name):
    """The fused path against the same loss fed the memory's pairs as lists (self pairs dropped), including a
    batch that fills the whole memory (no other rows) and one that wraps around it."""
    fused = losses.CrossBatchMemory(getattr(losses, loss_name)(), D, memory_size=BATCH + 4)
    listed = losses.CrossBatchMemory(getattr(losses, loss_name)(), D, memory_size=BATCH + 4,
                                     miner=lambda e, l, r, rl: cross_batch_memory.all_pairs(l, rl))
    for emb, labels in _steps((loss_name, "listed"), 4, "cpu"):
        got, want = fused(emb, labels), listed(emb, labels)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(*(torch.autograd.grad(x, emb)[0] for x in (got, want)), rtol=1e-10, atol=1e-12)


def test_a_batch_of_one_row_drops_its_self_comparison():
    """PML's wrap-around rule keeps (0, slot) when the batch has one row; here it is dropped, as for any batch."""
    memory = losses.CrossBatchMemory(losses.ContrastiveLoss(pos_margin=0.5), D, memory_size=8)
    listed = losses.ContrastiveLoss(pos_margin=0.5)
    for step, (emb, labels) in enumerate(_steps("one row", 10, "cpu", batch=1, n_labels=2)):
        got = memory(emb, labels)
        filled = min(step + 1, 8)
        slot = step % 8
        a1, p, a2, n = cross_batch_memory.all_pairs(labels, memory.label_memory[:filled])
        keep = p != slot
        want = listed(emb, labels, (a1[keep], p[keep], a2, n), memory.embedding_memory[:filled],
                      memory.label_memory[:filled])
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_memory_follows_the_embeddings_dtype_and_loads_pml_state():
    ours, theirs = _pair("MultiSimilarityLoss")
    for emb, labels in _steps("state", 2, "cpu"):
        theirs(emb, labels)
    ours.double().load_state_dict(theirs.state_dict())  # the same buffer names
    ours.queue_idx, ours.has_been_filled = theirs.queue_idx, theirs.has_been_filled
    _assert_same_steps(ours, theirs, "state, then", "cpu", n_steps=3)
    fresh = losses.CrossBatchMemory(losses.MultiSimilarityLoss(), D, memory_size=MEMORY)
    fresh(*next(_steps("dtype", 1, "cpu")))
    assert fresh.embedding_memory.dtype == torch.float64  # moved to the embeddings' dtype, as PML's
    ours.reset_queue()
    assert ours.queue_idx == 0 and not ours.has_been_filled and not ours.embedding_memory.any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("loss_name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_half_precision_follows_pml_in_float32(loss_name, dtype):
    """Half inputs: our value against PML's on the same inputs cast to float32 (PML has no half kernels)."""
    ours = losses.CrossBatchMemory(getattr(losses, loss_name)(), D, memory_size=MEMORY)
    theirs = pml_losses.CrossBatchMemory(getattr(pml_losses, loss_name)(), D, memory_size=MEMORY)
    for emb, labels in _steps((loss_name, str(dtype)), 5, "cpu", dtype=torch.float32):
        half = emb.detach().to(dtype).requires_grad_()
        got = ours(half, labels)
        want = theirs(half.detach().float().requires_grad_(), labels)
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("call, match", [
    (lambda m: m(torch.randn(4, D + 1), torch.zeros(4, dtype=torch.long)), "embedding_size"),
    (lambda m: m(torch.randn(4, D), torch.zeros(5, dtype=torch.long)), "labels"),
    (lambda m: m(torch.randn(4, D), torch.zeros(4, dtype=torch.long), enqueue_mask=torch.ones(3, dtype=torch.bool)),
     "enqueue_mask"),
    (lambda m: m(torch.randn(4, D), torch.zeros(4, dtype=torch.long), enqueue_mask=torch.ones(4)), "enqueue_mask"),
    (lambda m: m(torch.randn(4, D), torch.zeros(4, dtype=torch.long), (torch.zeros(1),) * 3,
                 torch.ones(4, dtype=torch.bool)), "mutually exclusive"),
    (lambda m: m(torch.randn(MEMORY + 1, D), torch.zeros(MEMORY + 1, dtype=torch.long)), "memory_size"),
])
def test_bad_forward_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(losses.CrossBatchMemory(losses.MultiSimilarityLoss(), D, memory_size=MEMORY))


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": torch.nn.MSELoss(), "embedding_size": D}, "loss"),
    ({"loss": losses.MultiSimilarityLoss(), "embedding_size": 0}, "embedding_size"),
    ({"loss": losses.MultiSimilarityLoss(), "embedding_size": D, "memory_size": 2.5}, "memory_size"),
    ({"loss": losses.MultiSimilarityLoss(), "embedding_size": D, "miner": 3}, "miner"),
])
def test_bad_settings_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        losses.CrossBatchMemory(**kwargs)


@pytest.mark.parametrize("miner_name", [None, "TripletMarginMiner"])
@pytest.mark.parametrize("given_form", [None, 3, 4])
def test_pml_methods_give_pml_tuples_in_pml_order(miner_name, given_form):
    """add_to_memory, curr_batch_idx, create_indices_tuple and supported_losses, which PML's own tests call."""
    ours, theirs = (xbm.double() for xbm in _pair("ContrastiveLoss", miner_name))  # add_to_memory keeps dtypes
    assert ours.supported_losses() == pml_losses.CrossBatchMemory.supported_losses()
    for emb, labels in _steps(("methods", miner_name, given_form), 6, "cpu"):
        for xbm in (ours, theirs):
            xbm.add_to_memory(emb, labels, BATCH)
        torch.testing.assert_close(ours.curr_batch_idx, theirs.curr_batch_idx)
        if not theirs.has_been_filled:  # the unfilled rows are zeros, whose normalised L2 the kernels do not match
            continue
        given = None if given_form is None else pml_miners.TripletMarginMiner(margin=0.5)(emb, labels)
        if given_form == 4:
            given = (given[0], given[1], given[0], given[2])
        got, want = (xbm.create_indices_tuple(emb, labels, xbm.embedding_memory, xbm.label_memory, given, True)
                     for xbm in (ours, theirs))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
