"""basis_similarity and basis_pair_stats against the reference: values, gradients, dtypes, edge cases."""
import pytest
import torch

from helpers.op_cases import embeddings, labels, non_contiguous
from slade_ext import ops, reference


def basis(k=6, d=16, seed=7, dtype=torch.float32):
    return embeddings(k, d, seed, dtype)


@pytest.mark.parametrize("n,m", [(1, None), (10, None), (33, 70), (70, 33)])
def test_similarity_equals_reference(n, m):
    emb, w = embeddings(n), basis()
    ref = None if m is None else embeddings(m, seed=3)
    torch.testing.assert_close(ops.basis_similarity(emb, w, ref), reference.basis_similarity(emb, w, ref))


def test_similarity_batched():
    emb = torch.randn(3, 10, 16)
    ref = torch.randn(3, 12, 16)
    w = basis()
    out = ops.basis_similarity(emb, w, ref)
    assert out.shape == (3, 10, 12)
    for b in range(3):
        torch.testing.assert_close(out[b], reference.basis_similarity(emb[b], w, ref[b]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_similarity_half_inputs_accumulate_in_float32(dtype):
    emb, w = embeddings(20, dtype=dtype), basis(dtype=dtype)
    out = ops.basis_similarity(emb, w)
    assert out.dtype == dtype
    exact = reference.basis_similarity(emb.float(), w.float())
    torch.testing.assert_close(out.float(), exact, atol=1e-2, rtol=1e-2)


def test_similarity_non_contiguous():
    emb, w = embeddings(15), basis()
    torch.testing.assert_close(ops.basis_similarity(non_contiguous(emb), w), reference.basis_similarity(emb, w))


def test_similarity_gradcheck_float64():
    emb = embeddings(6, 5).double().requires_grad_()
    ref = embeddings(4, 5, seed=2).double().requires_grad_()
    w = basis(3, 5).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_similarity(x, b), (emb, w))
    assert torch.autograd.gradcheck(lambda x, b, y: ops.basis_similarity(x, b, y), (emb, w, ref))
    batched = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_similarity(x, b), (batched, w))


def test_similarity_gradients_equal_reference():
    emb, ref, w = embeddings(12), embeddings(9, seed=4), basis()
    weights = torch.randn(12, 9)
    grads = []
    for fn in (ops.basis_similarity, reference.basis_similarity):
        leaves = [t.clone().requires_grad_() for t in (emb, w, ref)]
        (fn(leaves[0], leaves[1], leaves[2]) * weights).sum().backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


def assert_stats_close(got, want):
    for g, w in zip(got[:4], want[:4]):
        torch.testing.assert_close(g.double(), w.double(), atol=1e-5, rtol=1e-4)
    assert int(got[4]) == int(want[4]) and int(got[5]) == int(want[5])


@pytest.mark.parametrize("n,classes", [(2, 1), (25, 3), (80, 20), (50, 1)])
def test_pair_stats_equal_reference(n, classes):
    emb, w, lab = embeddings(n), basis(), labels(n, classes)
    assert_stats_close(ops.basis_pair_stats(emb, w, lab), reference.basis_pair_stats(emb, w, lab))


def test_pair_stats_with_reference_set_and_unknown_labels():
    emb, w = embeddings(30), basis()
    lab = labels(30, 4) - 1  # -1 marks unknown: those pairs are ignored
    ref, ref_lab = embeddings(70, seed=5), labels(70, 4, seed=5) - 1
    got = ops.basis_pair_stats(emb, w, lab, ref, ref_lab)
    assert_stats_close(got, reference.basis_pair_stats(emb, w, lab, ref, ref_lab))
    known = (lab >= 0).sum() * (ref_lab >= 0).sum()
    assert int(got[4] + got[5]) == int(known)


def test_pair_stats_without_pairs_are_zero():
    emb, w = embeddings(4), basis()
    got = ops.basis_pair_stats(emb, w, torch.tensor([0, 1, 2, 3]))  # no positive pair
    assert float(got[0]) == 0.0 and float(got[1]) == 0.0 and int(got[4]) == 0 and int(got[5]) == 12
    got = ops.basis_pair_stats(emb, w, torch.full((4,), -1))  # everything unknown
    assert int(got[4]) == 0 and int(got[5]) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pair_stats_half_inputs(dtype):
    emb, w, lab = embeddings(40, dtype=dtype), basis(dtype=dtype), labels(40, 4)
    got = ops.basis_pair_stats(emb, w, lab)
    assert got[0].dtype == torch.float32
    assert_stats_close(got, reference.basis_pair_stats(emb, w, lab))


def test_pair_stats_gradcheck_float64():
    emb = embeddings(8, 5).double().requires_grad_()
    ref = embeddings(6, 5, seed=3).double().requires_grad_()
    w = basis(3, 5).double().requires_grad_()
    lab, ref_lab = torch.tensor([0, 0, 1, 1, 2, -1, 2, 0]), torch.tensor([0, 1, 2, -1, 0, 1])
    assert torch.autograd.gradcheck(lambda x, b: ops.basis_pair_stats(x, b, lab)[:4], (emb, w))
    assert torch.autograd.gradcheck(lambda x, b, y: ops.basis_pair_stats(x, b, lab, y, ref_lab)[:4], (emb, w, ref))


def test_pair_stats_gradients_equal_reference_over_several_tiles():
    # 1500 x 3000 pairs exceed the 4M-value CPU tile? No: 1500*3000 = 4.5M, so two tiles.
    emb, ref, w = embeddings(1500, 8), embeddings(3000, 8, seed=6), basis(5, 8)
    lab, ref_lab = labels(1500, 30), labels(3000, 30, seed=6)
    coefs = torch.tensor([1.0, -0.5, 0.3, 2.0])
    grads = []
    for fn in (ops.basis_pair_stats, reference.basis_pair_stats):
        leaves = [t.clone().requires_grad_() for t in (emb, w, ref)]
        out = fn(leaves[0], leaves[1], lab, leaves[2], ref_lab)
        (torch.stack([o.float() for o in out[:4]]) * coefs).sum().backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-3)
