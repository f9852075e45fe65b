"""Backwards that need no recomputed tiles, from what their CPU forward kept: the contrastive loss's record of its
active pairs (the pairs with a non-zero loss), kept when a gradient will be needed and the pairs are few, dropped
past its limit; and the multi-similarity loss's rows' gradients, kept against references that need no gradient (a
memory bank). Either way the gradients equal the dense backward's and PML's. Other devices keep neither."""
from __future__ import annotations

import pytest
import torch

from slade_ext import loss_ops, losses

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

FORWARD, BACKWARD = torch.ops.slade.contrastive_loss_rows, torch.ops.slade.contrastive_loss_rows_backward

# Margins that leave a few per cent of the pairs active on clustered-but-noisy rows of 16 features (2 per class):
# the record's limit is a sixteenth of all pairs. (pos_margin, neg_margin) in each distance's own units.
MARGINS = {"l2": (0.0, 0.9), "euclidean": (0.0, 3.5), "l2sq": (0.0, 1.0), "sqeuclidean": (0.0, 12.0),
           "cosine": (0.0, 0.6), "dot": (-2.0, 9.0)}


def inputs(n, d=16, seed=0, dtype=torch.float64, per_class=2, duplicates=False):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=dtype)
    if duplicates:  # identical rows: a distance of exactly 0 in torch.cdist's matrix-product form
        emb[n // 4:n // 2] = emb[:n // 4]
    return emb, torch.arange(n) // per_class


def grads_both_ways(args, n_rows, mask):
    """The backward op's gradients from the forward's record and from recomputed tiles, and the record's size."""
    rows, ptr, cols, closeness = FORWARD(*args, True)
    assert ptr.numel() == 2 * n_rows + 1, "the record was dropped: these inputs should keep it"
    assert torch.equal(rows, FORWARD(*args, False)[0])  # recording changes nothing in the forward
    grad_rows = torch.randn(rows.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    recorded = BACKWARD(grad_rows, rows, *args, mask, ptr, cols, closeness)
    recomputed = BACKWARD(grad_rows, rows, *args, mask)
    return recorded, recomputed, cols.numel()


@pytest.mark.parametrize("distance", list(MARGINS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["self", "query slice", "references", "duplicates"])
@pytest.mark.parametrize("mask", [[True, True], [True, False], [False, True]], ids=str)
def test_backward_from_the_record_equals_the_recomputed_tiles(distance, dtype, case, mask):
    emb, labels = inputs(64, dtype=dtype, duplicates=case == "duplicates")
    ref, ref_labels = inputs(50, seed=1, dtype=dtype) if case == "references" else (None, None)
    query = (5, 30) if case == "query slice" else (0, -1)
    args = (emb, labels, ref, ref_labels, None, None, None, None, *MARGINS[distance], distance, *query)
    n_rows = (query[1] - query[0]) if case == "query slice" else 64
    recorded, recomputed, n_active = grads_both_ways(args, n_rows, mask)
    assert 0 < n_active <= 64 * (50 if ref is not None else 64) // 16
    for got, want in zip(recorded, recomputed):
        assert got.shape == want.shape
        if want.numel():
            # identical rows: the dense backward's h x - h y cancels with h = 1 / d large; per pair, x - y is 0
            scale = want.abs().max().item()
            tol = (3e-4 if dtype == torch.float32 else 1e-8) if case == "duplicates" else \
                (2e-6 if dtype == torch.float32 else 1e-12)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


def test_backward_from_the_record_with_pair_lists():
    """Listed pairs (a miner's, duplicates counted as often as listed) are recorded as listed."""
    emb, _ = inputs(120)
    a = torch.arange(120).repeat_interleave(2)
    p, n = (a + 1) % 120, (a + 7) % 120
    lists = loss_ops.pair_lists(torch.cat([a, a[:9]]), torch.cat([p, p[:9]]), a, n, 120, 120, as_mask=False)
    args = (emb, None, None, None, *lists, 0.1, 1.2, "l2", 0, -1)
    recorded, recomputed, n_active = grads_both_ways(args, 120, [True, True])
    assert n_active > 0
    torch.testing.assert_close(recorded[0], recomputed[0], rtol=1e-12, atol=1e-12)


def test_record_is_dropped_past_its_limit_and_not_kept_without_a_gradient():
    emb, labels = inputs(64, per_class=16)  # 4 classes: a quarter of all pairs are positives, each one active
    args = (emb, labels, None, None, None, None, None, None, 0.0, 1.0, "l2", 0, -1)
    assert [t.numel() for t in FORWARD(*args, True)[1:]] == [0, 0, 0]
    emb, labels = inputs(64)
    args = (emb, labels) + args[2:]
    assert [t.numel() for t in FORWARD(*args, False)[1:]] == [0, 0, 0]
    assert FORWARD(*args, True)[1].numel() == 2 * 64 + 1


@pytest.mark.parametrize("per_class", [2, 16], ids=["record kept", "record dropped"])
@pytest.mark.parametrize("distance", ["l2", "l2 squared", "cosine"])
def test_contrastive_loss_gradients_equal_pmls_either_way(per_class, distance):
    make = {"l2": lambda: pml_distances.LpDistance(), "l2 squared": lambda: pml_distances.LpDistance(power=2),
            "cosine": lambda: pml_distances.CosineSimilarity()}[distance]
    margins = {"l2": (0.0, 0.9), "l2 squared": (0.0, 1.0), "cosine": (0.9, 0.6)}[distance]
    emb, labels = inputs(96, per_class=per_class)
    ref, ref_labels = inputs(80, seed=2, per_class=per_class)
    results = []
    for module in (losses, pml_losses):
        loss_fn = module.ContrastiveLoss(*margins, distance=make())
        e, r = emb.clone().requires_grad_(), ref.clone().requires_grad_()
        loss = loss_fn(e, labels, ref_emb=r, ref_labels=ref_labels) + loss_fn(e, labels)
        loss.backward()
        results.append((loss.detach(), e.grad, r.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_cross_batch_memory_with_the_record_equals_pmls():
    xbm = pytest.importorskip("slade_ext.cross_batch_memory")
    emb, labels = inputs(32, d=8, dtype=torch.float32)
    memory, memory_labels = inputs(400, d=8, seed=3, dtype=torch.float32)
    results = []
    for module, wrapper in ((losses, xbm.CrossBatchMemory), (pml_losses, pml_losses.CrossBatchMemory)):
        bank = wrapper(module.ContrastiveLoss(), 8, memory_size=400)
        bank.embedding_memory, bank.label_memory = memory.clone(), memory_labels.clone()
        bank.has_been_filled, bank.queue_idx = True, 150
        e = emb.clone().requires_grad_()
        loss = bank(e, labels)
        loss.backward()
        results.append((loss.detach(), e.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad,match", [
    (lambda ptr, cols, c: (ptr[:-1], cols, c), "active_ptr must be a CPU int64 tensor of 2 N"),
    (lambda ptr, cols, c: (ptr.int(), cols, c), "active_ptr must be a CPU int64 tensor"),
    (lambda ptr, cols, c: (ptr, cols + 10_000, c), "active_cols must index the reference set"),
    (lambda ptr, cols, c: (ptr, cols, c.float()), "active_cols \\(int64\\) and active_closeness \\(float64\\)"),
    (lambda ptr, cols, c: (ptr, cols[:-1], c[:-1]), "active_ptr must run from 0 to the number of active pairs"),
    (lambda ptr, cols, c: (ptr, None, c), "must be given together"),
])
def test_backward_refuses_a_broken_record(bad, match):
    emb, labels = inputs(64)
    args = (emb, labels, None, None, None, None, None, None, 0.0, 0.9, "l2", 0, -1)
    rows, *record = FORWARD(*args, True)
    with pytest.raises(ValueError, match=match):
        BACKWARD(torch.ones_like(rows), rows, *args, [True, True], *bad(*record))


# ---- the multi-similarity loss's rows' gradients ----------------------------------------------------------------

MS_FORWARD, MS_BACKWARD = torch.ops.slade.multi_similarity_loss_rows, torch.ops.slade.multi_similarity_loss_rows_backward


@pytest.mark.parametrize("distance", ["cosine", "dot"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("classes", ["many", "two"], ids=["few positives", "half positives"])
@pytest.mark.parametrize("params", [(2.0, 50.0, 0.5), (-1.0, 3.0, 0.2)], ids=["defaults", "negative alpha"])
def test_ms_backward_from_the_rows_gradients_equals_the_recomputed_tiles(distance, dtype, classes, params):
    """Few positives are added pair by pair, many (two classes) by a second GEMM."""
    emb, labels = inputs(64, dtype=dtype)
    ref, _ = inputs(300, seed=1, dtype=dtype)
    ref_labels = torch.arange(300) % (32 if classes == "many" else 2)
    if classes == "two":
        labels = labels % 2
    args = (emb, labels, ref, ref_labels, None, None, None, None, *params, distance, 0, -1)
    rows, row_grads = MS_FORWARD(*args, True)
    assert row_grads.shape == (64 * 2 * 16,)
    assert torch.equal(rows, MS_FORWARD(*args, False)[0])
    grad_rows = torch.randn(rows.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    got, none = MS_BACKWARD(grad_rows, rows, *args, [True, False], row_grads)
    want, _ = MS_BACKWARD(grad_rows, rows, *args, [True, False])
    assert none.shape == (0,)
    # the weights come from exp(term - max) / (exp(-max) + sum) instead of exp(term - lse): equal to rounding,
    # which the unnormalised dot products' large exponents (beta * s ~ 50 * 16) scale up
    tol = {torch.float32: 3e-5 if distance == "dot" else 2e-6, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * want.abs().max().item())


def test_ms_rows_gradients_only_where_they_are_the_whole_backward():
    emb, labels = inputs(40)
    ref, ref_labels = inputs(50, seed=1)
    lists = loss_ops.pair_lists(torch.arange(40), torch.arange(40), torch.arange(40), (torch.arange(40) + 3) % 50,
                                40, 50, as_mask=True)
    params = (2.0, 50.0, 0.5)
    cases = {
        "against itself": (emb, labels, None, None, None, None, None, None, *params, "cosine", 0, -1),
        "pair lists": (emb, None, ref, None, *lists, *params, "cosine", 0, -1),
        "a distance": (emb, labels, ref, ref_labels, None, None, None, None, *params, "l2", 0, -1),
        "labels beyond int32": (emb, labels + 2**40, ref, ref_labels, None, None, None, None, *params, "cosine",
                                0, -1),
    }
    for name, args in cases.items():
        assert MS_FORWARD(*args, True)[1].numel() == 0, name
    # and the wrapper asks only when the references need no gradient
    e, r = emb.clone().requires_grad_(), ref.clone().requires_grad_()
    loss_ops.multi_similarity_loss_rows(e, labels, r, ref_labels)[:, :2].sum().backward()
    expected = e.grad.clone()
    e.grad = None
    loss_ops.multi_similarity_loss_rows(e, labels, ref, ref_labels)[:, :2].sum().backward()
    torch.testing.assert_close(e.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_class", [2, 32], ids=["few positives", "many positives"])
@pytest.mark.parametrize("distance", ["cosine", "dot unnormalised"])
def test_ms_loss_against_a_detached_memory_equals_pml(per_class, distance):
    make = {"cosine": lambda: pml_distances.CosineSimilarity(),
            "dot unnormalised": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False)}[distance]
    emb, labels = inputs(96, per_class=per_class)
    memory, memory_labels = inputs(400, seed=2, per_class=per_class)
    results = []
    for module in (losses, pml_losses):
        loss_fn = module.MultiSimilarityLoss(distance=make())
        e = emb.clone().requires_grad_()
        loss = loss_fn(e, labels, ref_emb=memory, ref_labels=memory_labels)
        loss.backward()
        results.append((loss.detach(), e.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_ms_backward_refuses_broken_rows_gradients():
    emb, labels = inputs(40)
    ref, ref_labels = inputs(50, seed=1)
    args = (emb, labels, ref, ref_labels, None, None, None, None, 2.0, 50.0, 0.5, "cosine", 0, -1)
    rows, row_grads = MS_FORWARD(*args, True)
    for bad in (row_grads[:-1], row_grads.float(), row_grads.view(40, 2, 16)):
        with pytest.raises(ValueError, match="row_grads must be the forward's"):
            MS_BACKWARD(torch.ones_like(rows), rows, *args, [True, False], bad)
