"""Running an op on either device against its spec, and the inputs that make CUDA-vs-CPU comparisons exact.

The spec of an op is the pure-PyTorch reference (slade_ext.reference) on the CPU, and the CPU kernels on CUDA:
CUDA results must give the CPU's index tuples (same pairs, same order) and the CPU's floats (to tolerance).

Exact comparisons need inputs whose similarities round the same way under cuBLAS and the CPU's BLAS:
- float32 (and fp16/bf16) mining inputs are "sign" embeddings, +-1 entries with d a power of 4: the unit rows are
  +-1/sqrt(d), so every similarity is exact in any summation order (and many of them tie);
- continuous inputs are float64, where the two BLAS differ by ~1e-16, too little to flip a comparison in practice.
Continuous float32 inputs would now and then put a similarity within an ulp of a threshold and flip a pair, so
index checks on them run on the CPU only (`skip_inexact_on_cuda`).
"""
from __future__ import annotations

import pytest
import torch

from helpers.op_cases import SHAPES, assert_same_indices, labels

CUDA_TILE_ELEMS = 1 << 26  # kCudaTileElems (csrc/include/slade/common.h)

INEXACT_ON_CUDA = (
    "continuous float32 inputs can round a similarity across a threshold differently under cuBLAS; the CUDA kernels "
    "meet this rule on exact (sign / float64) inputs in the same family's *_matches_spec tests"
)
CUDA_ONLY = "CUDA-only check: the CPU kernels are the spec it is compared against"


def skip_inexact_on_cuda(device: str, why: str = INEXACT_ON_CUDA) -> None:
    if device == "cuda":
        pytest.skip(why)


def cuda_only(device: str, why: str = CUDA_ONLY) -> None:
    if device != "cuda":
        pytest.skip(why)


# ---- inputs ----------------------------------------------------------------------------------------------------


def sign_embeddings(n, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, d), generator=g) * 2 - 1).to(dtype)


def sign_basis(k=16, d=16, seed=5, dtype=torch.float32):
    """k of the d coordinates with random signs (k a power of 4): W f of a sign embedding is a sign vector."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(k, d)
    w[torch.arange(k), torch.randperm(d, generator=g)[:k]] = (torch.randint(0, 2, (k,), generator=g) * 2 - 1).float()
    return w.to(dtype)


def gaussian(n, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


def clustered(n, m, n_classes, d=16, noise=0.3, seed=0):
    """float64 points around class centres: realistic, moderately sized mining outputs at large N * M."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, d, generator=g, dtype=torch.float64)

    def sample(k):
        lab = torch.randint(0, n_classes, (k,), generator=g)
        return centres[lab] + noise * torch.randn(k, d, generator=g, dtype=torch.float64), lab

    emb, lab = sample(n)
    if m is None:
        return emb, lab, None, None
    return (emb, lab) + sample(m)


EXACT_EMBEDDINGS = {"sign32": sign_embeddings, "float64": gaussian}
# Rows longer than a CUDA block (256 threads), so compactions take several rounds.
MEDIUM_SHAPES = [("medium_self", 600, None, 40), ("medium_ref", 300, 1000, 30)]
EXACT_SHAPES = SHAPES + MEDIUM_SHAPES


def exact_case_inputs(kind, name, n, m, n_classes, d=16):
    make = EXACT_EMBEDDINGS[kind]
    emb, lab = make(n, d, seed=0), labels(n, n_classes, seed=1)
    if m is None:
        return emb, lab, None, None
    return emb, lab, make(m, d, seed=2), labels(m, n_classes, seed=3)


# ---- running an op on a device ---------------------------------------------------------------------------------


def mover(device):
    """Moves tensors to `device`, keeping identities: ops treat `ref_emb is emb` as a self-comparison."""
    moved = {}

    def move(x):
        if not isinstance(x, torch.Tensor):
            return x
        if id(x) not in moved:
            moved[id(x)] = x.to(device)
        return moved[id(x)]

    return move


def run_on(device, op, *args, **kwargs):
    move = mover(device)
    return op(*[move(a) for a in args], **{k: move(v) for k, v in kwargs.items()})


def spec(device, op, reference_op):
    """What `op` on `device` is compared against (run on the CPU): the reference on CPU, the CPU kernels on CUDA."""
    return reference_op if torch.device(device).type == "cpu" else op


def assert_indices_match(device, op, reference_op, *args, **kwargs):
    """op on `device` returns its spec's int64 index tuples, on that device. Returns them (on the CPU)."""
    device = torch.device(device)
    want = spec(device, op, reference_op)(*args, **kwargs)
    got = run_on(device, op, *args, **kwargs)
    for t in got:
        assert t.device.type == device.type and (device.index is None or t.device == device), t.device
    got = [t.cpu() for t in got]
    assert_same_indices(got, want)
    return got


def assert_stats_match(device, got, want, rtol, atol):
    """Pair statistics: moments to tolerance (same dtype, on `device`), counts exactly."""
    for g, w in zip(got[:4], want[:4]):
        assert g.device.type == torch.device(device).type and g.dtype == w.dtype
        torch.testing.assert_close(g.cpu(), w, rtol=rtol, atol=atol)
    for g, w in zip(got[4:], want[4:]):
        assert torch.equal(g.cpu(), w)


def strided(x, device="cpu"):
    """x on `device` with a column stride of 2 (moving a strided view would make it contiguous)."""
    wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=x.dtype, device=device)
    wide[:, ::2] = x.to(device)
    out = wide[:, ::2]
    assert not out.is_contiguous()
    return out


def column_major(x, device="cpu"):
    return x.to(device).t().contiguous().t()


# CUDA-vs-CPU float tolerances by dtype.
TOLERANCE = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (2e-2, 2e-2),
}
