"""The basis family: basis_similarity and basis_pair_stats (values, gradients, dtypes, edge cases, which gradients
a backward computes) and the FeatureBasis module built on them.

Every check takes `device`: on the CPU the ops equal the pure-PyTorch reference, on CUDA they equal it (or the CPU
kernels) to the tolerances of tests/support/helpers/cuda_cases.py.
"""
from __future__ import annotations

import math

import pytest
import torch

from helpers.cuda_cases import (
    TOLERANCE,
    assert_stats_match,
    clustered,
    cuda_only,
    gaussian,
    mover,
    run_on,
    sign_basis,
    sign_embeddings,
    strided,
)
from helpers.op_cases import SHAPES, embeddings, labels, with_ties
from slade_ext import ops, reference
from slade_ext.basis import FeatureBasis


def basis(k=6, d=16, seed=7, dtype=torch.float32):
    return embeddings(k, d, seed, dtype)


def close(device, dtype=torch.float32, **cpu_tolerance):
    """assert_close tolerances: the CPU check's own (default: assert_close's), the CUDA table on CUDA."""
    if device == "cpu":
        return cpu_tolerance
    rtol, atol = TOLERANCE[dtype]
    return dict(rtol=max(rtol, cpu_tolerance.get("rtol", 0)), atol=max(atol, cpu_tolerance.get("atol", 0)))


# ---- basis similarity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,m", [(1, None), (10, None), (33, 70), (70, 33)])
def test_similarity_equals_reference(device, n, m):
    emb, w = embeddings(n), basis()
    ref = None if m is None else embeddings(m, seed=3)
    got = run_on(device, ops.basis_similarity, emb, w, ref)
    assert got.device.type == device
    torch.testing.assert_close(got.cpu(), reference.basis_similarity(emb, w, ref), **close(device))


def test_similarity_batched(device):
    emb = torch.randn(3, 10, 16)
    ref = torch.randn(3, 12, 16)
    w = basis()
    out = run_on(device, ops.basis_similarity, emb, w, ref)
    assert out.shape == (3, 10, 12)
    for b in range(3):
        torch.testing.assert_close(out[b].cpu(), reference.basis_similarity(emb[b], w, ref[b]), **close(device))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_similarity_half_inputs_accumulate_in_float32(device, dtype):
    emb, w = embeddings(20, dtype=dtype), basis(dtype=dtype)
    out = run_on(device, ops.basis_similarity, emb, w)
    assert out.dtype == dtype
    exact = reference.basis_similarity(emb.float(), w.float())
    torch.testing.assert_close(out.float().cpu(), exact, atol=1e-2, rtol=1e-2)


def test_similarity_non_contiguous(device):
    emb, w = embeddings(15), basis()
    got = ops.basis_similarity(strided(emb, device), w.to(device))
    torch.testing.assert_close(got.cpu(), reference.basis_similarity(emb, w), **close(device))


def test_similarity_gradcheck_float64(device):
    emb = embeddings(6, 5).double().to(device).requires_grad_()
    ref = embeddings(4, 5, seed=2).double().to(device).requires_grad_()
    w = basis(3, 5).double().to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_similarity(x, b), (emb, w))
    assert torch.autograd.gradcheck(lambda x, b, y: ops.basis_similarity(x, b, y), (emb, w, ref))
    batched = torch.randn(2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_similarity(x, b), (batched, w))


def test_similarity_gradients_equal_reference(device):
    emb, ref, w = embeddings(12), embeddings(9, seed=4), basis()
    weights = torch.randn(12, 9)
    grads = []
    for fn, dev in ((ops.basis_similarity, device), (reference.basis_similarity, "cpu")):
        leaves = [t.to(dev).requires_grad_() for t in (emb, w, ref)]
        (fn(leaves[0], leaves[1], leaves[2]) * weights.to(dev)).sum().backward()
        grads.append([t.grad.cpu() for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, **close(device))


def similarity_and_grads(device, fn, emb, basis, ref, weights):
    move = mover(device)
    leaves = [move(t).clone().requires_grad_() for t in (emb, basis, ref) if t is not None]
    sim = fn(leaves[0], leaves[1], leaves[2] if ref is not None else None)
    (sim * move(weights).to(sim.dtype)).sum().backward()
    return [sim] + [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shapes", [((1, 16), None), ((33, 16), None), ((33, 16), (70, 16)), ((3, 10, 16), (3, 12, 16))],
                         ids=str)
def test_similarity_and_grads_match_spec(device, shapes, dtype):
    """Values and all three gradients in every dtype: against the reference on the CPU, the CPU kernels on CUDA."""
    emb_shape, ref_shape = shapes
    emb = gaussian(1, emb_shape[-1] * torch.Size(emb_shape[:-1]).numel()).reshape(emb_shape).to(dtype)
    ref = None
    if ref_shape is not None:
        ref = gaussian(1, ref_shape[-1] * torch.Size(ref_shape[:-1]).numel(), seed=2).reshape(ref_shape).to(dtype)
    w = gaussian(6, seed=7, dtype=dtype)
    weights = torch.randn(*emb_shape[:-1], (ref_shape or emb_shape)[-2], generator=torch.Generator().manual_seed(3))
    rtol, atol = TOLERANCE[dtype]
    spec = reference.basis_similarity if device == "cpu" else ops.basis_similarity
    want = similarity_and_grads("cpu", spec, emb, w, ref, weights)
    got = similarity_and_grads(device, ops.basis_similarity, emb, w, ref, weights)
    for g, want_t in zip(got, want):
        assert g.device.type == device and g.dtype == want_t.dtype
        torch.testing.assert_close(g.cpu(), want_t.detach(), rtol=rtol, atol=atol)


# ---- pair statistics -------------------------------------------------------------------------------------------


def assert_stats_close(got, want):
    for g, w in zip(got[:4], want[:4]):
        torch.testing.assert_close(g.double().cpu(), w.double(), atol=1e-5, rtol=1e-4)
    assert int(got[4]) == int(want[4]) and int(got[5]) == int(want[5])


@pytest.mark.parametrize("n,classes", [(2, 1), (25, 3), (80, 20), (50, 1)])
def test_pair_stats_equal_reference(device, n, classes):
    emb, w, lab = embeddings(n), basis(), labels(n, classes)
    assert_stats_close(run_on(device, ops.basis_pair_stats, emb, w, lab), reference.basis_pair_stats(emb, w, lab))


def test_pair_stats_with_reference_set_and_unknown_labels(device):
    emb, w = embeddings(30), basis()
    lab = labels(30, 4) - 1  # -1 marks unknown: those pairs are ignored
    ref, ref_lab = embeddings(70, seed=5), labels(70, 4, seed=5) - 1
    got = run_on(device, ops.basis_pair_stats, emb, w, lab, ref, ref_lab)
    assert_stats_close(got, reference.basis_pair_stats(emb, w, lab, ref, ref_lab))
    known = (lab >= 0).sum() * (ref_lab >= 0).sum()
    assert int(got[4] + got[5]) == int(known)


def test_pair_stats_without_pairs_are_zero(device):
    emb, w = embeddings(4).to(device), basis().to(device)
    got = ops.basis_pair_stats(emb, w, torch.tensor([0, 1, 2, 3], device=device))  # no positive pair
    assert float(got[0]) == 0.0 and float(got[1]) == 0.0 and int(got[4]) == 0 and int(got[5]) == 12
    got = ops.basis_pair_stats(emb, w, torch.full((4,), -1, device=device))  # everything unknown
    assert int(got[4]) == 0 and int(got[5]) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pair_stats_half_inputs(device, dtype):
    emb, w, lab = embeddings(40, dtype=dtype), basis(dtype=dtype), labels(40, 4)
    got = run_on(device, ops.basis_pair_stats, emb, w, lab)
    assert got[0].dtype == torch.float32
    assert_stats_close(got, reference.basis_pair_stats(emb, w, lab))


def test_pair_stats_gradcheck_float64(device):
    emb = embeddings(8, 5).double().to(device).requires_grad_()
    ref = embeddings(6, 5, seed=3).double().to(device).requires_grad_()
    w = basis(3, 5).double().to(device).requires_grad_()
    lab = torch.tensor([0, 0, 1, 1, 2, -1, 2, 0], device=device)
    ref_lab = torch.tensor([0, 1, 2, -1, 0, 1], device=device)
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_pair_stats(x, b, lab)[:4], (emb, w))
    assert torch.autograd.gradcheck(lambda x, b, y: ops.basis_pair_stats(x, b, lab, y, ref_lab)[:4], (emb, w, ref))


def test_pair_stats_gradients_equal_reference_over_several_tiles(device):
    # 1500 x 3000 pairs exceed the 4M-value CPU tile? No: 1500*3000 = 4.5M, so two tiles (one on CUDA).
    emb, ref, w = embeddings(1500, 8), embeddings(3000, 8, seed=6), basis(5, 8)
    lab, ref_lab = labels(1500, 30), labels(3000, 30, seed=6)
    coefs = torch.tensor([1.0, -0.5, 0.3, 2.0])
    grads = []
    for fn, dev in ((ops.basis_pair_stats, device), (reference.basis_pair_stats, "cpu")):
        leaves = [t.to(dev).requires_grad_() for t in (emb, w, ref)]
        out = fn(leaves[0], leaves[1], lab.to(dev), leaves[2], ref_lab.to(dev))
        (torch.stack([o.float() for o in out[:4]]) * coefs.to(dev)).sum().backward()
        grads.append([t.grad.cpu() for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-3)


def stats_and_grads(device, fn, emb, basis, lab, ref=None, ref_lab=None):
    move = mover(device)
    leaves = [move(t).clone().requires_grad_() for t in (emb, basis, ref) if t is not None]
    stats = fn(leaves[0], leaves[1], move(lab), leaves[2] if ref is not None else None, move(ref_lab))
    mu_pos, var_pos, mu_neg, var_neg = stats[:4]
    (mu_pos - 2 * mu_neg + 3 * var_pos + 0.5 * var_neg).backward()
    return [s.detach() for s in stats], [t.grad for t in leaves]


def assert_stats_and_grads_match_spec(device, emb, basis, lab, ref=None, ref_lab=None, rtol=1e-4, atol=1e-6):
    """Moments, counts and gradients: against the reference on the CPU, the CPU kernels on CUDA."""
    spec = reference.basis_pair_stats if device == "cpu" else ops.basis_pair_stats
    want_stats, want_grads = stats_and_grads("cpu", spec, emb, basis, lab, ref, ref_lab)
    got_stats, got_grads = stats_and_grads(device, ops.basis_pair_stats, emb, basis, lab, ref, ref_lab)
    assert_stats_match(device, got_stats, want_stats, rtol, atol)
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g.cpu(), w, rtol=rtol, atol=atol)
    return got_stats


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", SHAPES, ids=[c[0] for c in SHAPES])
def test_pair_stats_and_grads_match_spec(device, case, dtype):
    _, n, m, n_classes = case
    emb, w, lab = gaussian(n, dtype=dtype), gaussian(6, seed=7, dtype=dtype), labels(n, n_classes + 1) - 1
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    if m is None:
        assert_stats_and_grads_match_spec(device, emb, w, lab, **tol)
    else:
        ref, ref_lab = gaussian(m, seed=2, dtype=dtype), labels(m, n_classes + 1, seed=3) - 1
        assert_stats_and_grads_match_spec(device, emb, w, lab, ref, ref_lab, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pair_stats_half_sign_inputs_match_spec(device, dtype):
    emb, w, lab = sign_embeddings(100, 64, dtype=dtype), sign_basis(16, 64, dtype=dtype), labels(100, 4)
    assert_stats_and_grads_match_spec(device, emb, w, lab, rtol=1e-3, atol=1e-3)


def test_pair_stats_edge_cases_match_spec(device):
    w = gaussian(6, seed=7)
    # Every label unknown: no pairs at all (zero moments, zero counts).
    stats = assert_stats_and_grads_match_spec(device, gaussian(20), w, torch.full((20,), -1))
    assert int(stats[4]) == 0 and int(stats[5]) == 0
    # Ties and a non-contiguous layout.
    assert_stats_and_grads_match_spec(device, with_ties(gaussian(50)), w, labels(50, 3))
    emb = gaussian(40)
    spec = reference.basis_pair_stats if device == "cpu" else ops.basis_pair_stats
    want = spec(emb, w, labels(40, 3))
    got = ops.basis_pair_stats(strided(emb, device), w.to(device), labels(40, 3).to(device, torch.int32))
    assert_stats_match(device, got, want, rtol=1e-9, atol=1e-12)


def test_pair_stats_spanning_several_cuda_tiles_match_cpu_and_are_deterministic(device):
    cuda_only(device)
    emb, lab, ref, ref_lab = clustered(2048, 40_000, 50)
    lab[::5] = -1
    w = gaussian(8, seed=11)
    spec_kwargs = dict(rtol=1e-8, atol=1e-10)
    want_stats, want_grads = stats_and_grads("cpu", ops.basis_pair_stats, emb, w, lab, ref, ref_lab)
    got_stats, got_grads = stats_and_grads(device, ops.basis_pair_stats, emb, w, lab, ref, ref_lab)
    assert_stats_match(device, got_stats, want_stats, **spec_kwargs)
    for g, want in zip(got_grads, want_grads):
        assert g.dtype == want.dtype
        torch.testing.assert_close(g.cpu(), want, **spec_kwargs)
    emb, lab, ref, ref_lab, w = (t.float().to(device) if t.is_floating_point() else t.to(device)
                                 for t in (emb, lab, ref, ref_lab, w))
    first = ops.basis_pair_stats(emb, w, lab, ref, ref_lab)
    second = ops.basis_pair_stats(emb, w, lab, ref, ref_lab)
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # bit-identical: no atomics in the reduction


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_pair_stats_on_a_second_cuda_device(device):
    cuda_only(device)
    emb, lab = gaussian(300), labels(300, 30, seed=1)
    w = gaussian(6, seed=7)
    want = ops.basis_pair_stats(emb, w, lab)
    got = run_on("cuda:1", ops.basis_pair_stats, emb, w, lab)
    assert all(t.device == torch.device("cuda:1") for t in got)
    torch.testing.assert_close([t.cpu() for t in got], list(want), rtol=1e-9, atol=1e-12)


# ---- backward computes only the gradients asked for (ctx.needs_input_grad) -------------------------------------

# (emb, basis, ref_emb) requires_grad patterns with at least one leaf.
GRAD_PATTERNS = [(True, False, False), (False, True, False), (False, False, True), (True, False, True),
                 (False, True, True), (True, True, True)]


def basis_op_loss(name, device, emb, w, ref):
    lab, ref_lab = labels(emb.shape[0], 3).to(device), labels(ref.shape[0], 3, seed=4).to(device)
    if name == "similarity":
        sim = ops.basis_similarity(emb, w, ref)
        return (sim * torch.linspace(-1, 1, sim.numel(), device=device, dtype=sim.dtype).view_as(sim)).sum()
    stats = ops.basis_pair_stats(emb, w, lab, ref, ref_lab)
    return stats[0] - 2 * stats[2] + 3 * stats[1] + 0.5 * stats[3]


@pytest.mark.parametrize("pattern", GRAD_PATTERNS, ids=str)
@pytest.mark.parametrize("name", ["similarity", "pair_stats"])
def test_backward_computes_only_the_needed_gradients(device, name, pattern):
    emb, w, ref = (t.double().to(device) for t in (embeddings(9, 5), basis(3, 5), embeddings(7, 5, seed=2)))
    full = [t.clone().requires_grad_() for t in (emb, w, ref)]
    basis_op_loss(name, device, *full).backward()
    partial = [t.clone().requires_grad_(wanted) for t, wanted in zip((emb, w, ref), pattern)]
    basis_op_loss(name, device, *partial).backward()
    for leaf, reference_leaf, wanted in zip(partial, full, pattern):
        if wanted:
            torch.testing.assert_close(leaf.grad, reference_leaf.grad)
        else:
            assert leaf.grad is None


class FakeCtx:
    """What a registered backward reads from its autograd context."""

    def __init__(self, needs_input_grad, saved_tensors):
        self.needs_input_grad = tuple(needs_input_grad)
        self.saved_tensors = tuple(saved_tensors)


@pytest.mark.parametrize("pattern", GRAD_PATTERNS, ids=str)
def test_registered_backwards_return_none_for_inputs_without_grad(device, pattern):
    from slade_ext import ops as ops_module

    emb, w, ref = (t.double().to(device) for t in (embeddings(9, 5), basis(3, 5), embeddings(7, 5, seed=2)))
    lab, ref_lab = labels(9, 3).to(device), labels(7, 3, seed=4).to(device)
    out = ops_module._similarity_backward(FakeCtx(pattern, (emb, w, ref)), torch.ones(9, 7, dtype=torch.float64,
                                                                                         device=device))
    assert [g is not None for g in out] == list(pattern)
    stats = torch.stack([s.double() for s in ops.basis_pair_stats(emb, w, lab, ref, ref_lab)])
    ctx = FakeCtx((pattern[0], pattern[1], False, pattern[2], False, False, False),
                  (emb, w, lab, ref, ref_lab, stats))
    ctx.query = (0, -1)
    one = torch.ones((), dtype=torch.float64, device=device)
    out = ops_module._stats_backward(ctx, one, one, one, one, None, None)
    assert [g is not None for g in out] == [pattern[0], pattern[1], False, pattern[2], False, False, False]
    # Without ref_emb (a shorter needs_input_grad when the optional inputs were left out of the call).
    out = ops_module._similarity_backward(FakeCtx(pattern[:2], (emb, w, None)), torch.ones(9, 9, dtype=torch.float64,
                                                                                           device=device))
    assert [g is not None for g in out] == [pattern[0], pattern[1], False]


@pytest.mark.parametrize("pattern", GRAD_PATTERNS, ids=str)
def test_backward_ops_honour_output_mask(device, pattern):
    """The kernels themselves: a gradient not asked for is an empty [0] tensor, the others are unchanged."""
    emb, w, ref = (t.double().to(device) for t in (embeddings(9, 5), basis(3, 5), embeddings(7, 5, seed=2)))
    lab, ref_lab = labels(9, 3).to(device), labels(7, 3, seed=4).to(device)
    grad = torch.randn(9, 7, dtype=torch.float64).to(device)
    stats = torch.stack([s.double() for s in ops.basis_pair_stats(emb, w, lab, ref, ref_lab)])
    grad_stats = torch.tensor([1.0, 3.0, -2.0, 0.5], dtype=torch.float64, device=device)
    calls = {
        "similarity": lambda mask: torch.ops.slade.basis_similarity_backward(grad, emb, w, ref, mask),
        "pair_stats": lambda mask: torch.ops.slade.basis_pair_stats_backward(
            grad_stats, emb, w, lab, ref, ref_lab, stats, output_mask=mask),
    }
    for call in calls.values():
        full = call([True, True, True])
        masked = call(list(pattern))
        for wanted, f, m in zip(pattern, full, masked):
            if wanted:
                torch.testing.assert_close(m, f, rtol=0, atol=0)
            else:
                assert m.shape == (0,)
    # Against itself there is no ref_emb gradient, whatever the mask says.
    for mask in ([True, True, True], [False, True, False], [True, False, False]):
        out = torch.ops.slade.basis_similarity_backward(torch.ones(9, 9, dtype=torch.float64, device=device), emb,
                                                        w, None, mask)
        assert [t.numel() > 0 for t in out] == [mask[0], mask[1], False]


# ---- FeatureBasis ----------------------------------------------------------------------------------------------


def make_inputs(n, n_classes, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype), torch.randint(0, n_classes, (n,), generator=g)


def test_feature_basis_statistics_and_gradient_modes(device):
    emb, pseudo = make_inputs(40, 4)
    grads = {}
    for mode in ("paper", "batch"):
        fb = FeatureBasis(num_classes=3, dim=16, margin=5.0, grad_mode=mode).double()
        with torch.no_grad():
            fb.weight.copy_(torch.randn(3, 16, generator=torch.Generator().manual_seed(2)))
        fb = fb.to(device)
        e = emb.clone().to(device).requires_grad_()
        fb.sd_loss(e, pseudo.to(device)).backward()
        grads[mode] = e.grad
        expected = reference.basis_pair_stats(emb, fb.weight.detach().cpu(), pseudo)
        torch.testing.assert_close(fb.mu_pos.cpu(), expected[0])
        torch.testing.assert_close(fb.var_neg.cpu(), expected[3])
    # Paper-faithful: the gradient flows through the batch part of the moving average only.
    torch.testing.assert_close(grads["paper"], 0.01 * grads["batch"])


def test_feature_basis_moving_average_and_ce(device):
    fb = FeatureBasis(num_classes=4, dim=16).double().to(device)
    (e1, p1), (e2, p2) = make_inputs(30, 3), make_inputs(30, 3, seed=5)
    e1, p1, e2, p2 = (t.to(device) for t in (e1, p1, e2, p2))
    fb.sd_loss(e1, p1)
    first = float(fb.mu_pos)
    fb.sd_loss(e2, p2)
    batch = float(ops.basis_pair_stats(e2, fb.weight.detach(), p2)[0])
    assert float(fb.mu_pos) == pytest.approx(0.99 * first + 0.01 * batch)
    assert fb.thresholds() == (float(fb.mu_pos), float(fb.mu_neg))
    lab = torch.tensor([0, 1, -1, 3] * 5, device=device)
    f = torch.randn(20, 16, dtype=torch.float64).to(device)
    keep = lab >= 0
    expected = torch.nn.functional.cross_entropy(f[keep] @ fb.weight.t(), lab[keep])
    torch.testing.assert_close(fb.ce_loss(f, lab), expected)


def test_cosine_logits_are_scaled_cosines_and_learn_where_the_linear_ones_stall():
    """ce_logits="cosine": logits = s cos(w_k, f); on unit embeddings a few steps of plain SGD bring L_CE well below
    log K with cosine logits (s = 16), while the paper's linear logits at W's init std stay near log K (same steps,
    same learning rate)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    y = torch.arange(8).repeat_interleave(16)
    f = torch.nn.functional.normalize(centers[y] + 0.3 * torch.randn(128, 16, generator=g), dim=1)
    cos = FeatureBasis(8, 16, ce_logits="cosine", ce_scale=16.0)
    want = 16.0 * torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(cos.weight, dim=1).t()
    torch.testing.assert_close(cos.logits(f), want)
    ratios = {}
    for mode, scale in (("cosine", 16.0), ("linear", 1.0)):
        torch.manual_seed(1)
        b = FeatureBasis(8, 16, ce_logits=mode, ce_scale=scale)
        opt = torch.optim.SGD(b.parameters(), lr=0.1)
        for _ in range(30):
            opt.zero_grad()
            loss = b.ce_loss(f, y)
            loss.backward()
            opt.step()
        ratios[mode] = float(b.ce_loss(f, y).detach()) / math.log(8)
    assert ratios["cosine"] < 0.3 and ratios["linear"] > 0.8, ratios
    with pytest.raises(ValueError, match="ce_logits"):
        FeatureBasis(8, 16, ce_logits="arc")
