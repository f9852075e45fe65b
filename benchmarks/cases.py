"""The benchmark suites' sizes, device and inputs, and the output checks run before timing (imported by the
suites as `cases`; benchmarks/ is on pytest's pythonpath).

Knobs (environment):
  SLADE_BENCH_SIZES   tiny (CI smoke run, seconds) | full (default: N = 1024, 2048, 4096 and 256 x 16,384)
  SLADE_BENCH_DEVICE  cpu (default) | cuda (adds N = 8192 and 65,536; PML's out-of-memory is recorded as such)
"""
from __future__ import annotations

import os

import torch

SIZES = os.environ.get("SLADE_BENCH_SIZES", "full")
DEVICE = torch.device(os.environ.get("SLADE_BENCH_DEVICE", "cpu"))
DIM = 128

# NT-Xent: PML's (pairs x pairs) mask has N^3 entries (N = 1024 would need ~18 GB), so PML runs at NTXENT only and
# slade_ext alone at NTXENT_LARGE, SimCLR's batch size that PML cannot hold.
if SIZES == "tiny":
    SQUARE = [128]
    CROSS = [(64, 512)]
    TRIPLET = [64]
    NTXENT, NTXENT_LARGE = [64], [256]
    UNCLUSTERED = [128]
    DISTANCE_OPTIONS = [128]
elif SIZES == "full":
    SQUARE = [1024, 2048, 4096] + ([8192, 65536] if DEVICE.type == "cuda" else [])
    CROSS = [(256, 16384)]
    TRIPLET = [512, 1024]
    NTXENT, NTXENT_LARGE = [256, 512], [8192]
    UNCLUSTERED = [4096]
    DISTANCE_OPTIONS = [4096]  # the distances other than each class's default, at the headline size
else:
    raise ValueError(f"SLADE_BENCH_SIZES must be 'tiny' or 'full', got {SIZES!r}")

IMPLS = ["slade_ext", "pml", "reference"]
FLOOR = "matrix products"  # the impl name of matrix_products' rows


def clustered(n: int, seed: int = 0, sigma: float = 0.1):
    """Embeddings of a half-trained model: N/8 classes of 8, unit class centres plus Gaussian noise (sigma per
    coordinate). Random embeddings would make almost every negative 'hard' and the miners' output ~N*M pairs."""
    g = torch.Generator().manual_seed(seed)
    n_classes = max(n // 8, 1)
    labels = torch.arange(n) % n_classes
    centres = torch.nn.functional.normalize(torch.randn(n_classes, DIM, generator=g), dim=1)
    emb = centres[labels] + sigma * torch.randn(n, DIM, generator=g)
    return emb.to(DEVICE), labels.to(DEVICE)


def unclustered(n: int, seed: int = 0):
    """Embeddings of an untrained model: random unit vectors, N/8 labels of 8. Nearly every negative is hard, so the
    miners' output approaches N*M pairs (early training looks like this)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, DIM, generator=g), dim=1)
    return emb.to(DEVICE), (torch.arange(n) % max(n // 8, 1)).to(DEVICE)


def two_views(n: int, seed: int = 0, sigma: float = 0.3):
    """SimCLR's batch: n / 2 images, two noisy views of each (the label marks the pair)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(n // 2, DIM, generator=g), dim=1)
    views = torch.cat([images, images]) + sigma * torch.randn(2 * (n // 2), DIM, generator=g) / DIM ** 0.5
    return views.to(DEVICE), torch.arange(n // 2).repeat(2).to(DEVICE)


def cross_batch(n: int, m: int):
    """A batch of n queries and a memory bank of m references drawn from the same classes (cross-batch memory):
    (emb, labels, ref_emb, ref_labels)."""
    emb, labels = clustered(n + m, seed=1)
    return emb[:n], labels[:n], emb[n:], labels[n:]


def unnormalised_distance(kind: str):
    """PML's distance object for the unnormalised options timed on the fused path: "dot" or "L2"."""
    from pytorch_metric_learning import distances

    if kind == "dot":
        return distances.DotProductSimilarity(normalize_embeddings=False)
    if kind == "L2":
        return distances.LpDistance(normalize_embeddings=False)
    raise ValueError(f"unnormalised_distance: kind must be 'dot' or 'L2', got {kind!r}")


def matrix_products(rows, refs, distance: str, gradient: bool = False):
    """A function timing the matrix products alone that PML's computation and slade_ext's both contain: the N x M
    distance GEMM (torch.cdist's matrix-product form for "l2": padded operands of d + 2 columns, built here outside
    the timing) and, with `gradient`, the gradient's (N x M) @ (M x d) GEMM. Its time bounds any implementation
    that keeps PML's arithmetic for the distances: the "matrix products" rows of RESULTS.md."""
    rows, refs = torch.nn.functional.normalize(rows, dim=1), torch.nn.functional.normalize(refs, dim=1)
    if distance == "l2":
        def pad(x, first, last):
            return torch.cat([x, first, last], 1)
        r2, q2 = rows.pow(2).sum(1, keepdim=True), refs.pow(2).sum(1, keepdim=True)
        a, b = pad(rows * -2, r2, torch.ones_like(r2)), pad(refs, torch.ones_like(q2), q2)
    else:
        a, b = rows, refs
    weights = torch.rand(rows.shape[0], refs.shape[0], generator=torch.Generator().manual_seed(0)).to(rows.device)

    def run():
        out = a @ b.T
        return (out, weights @ refs) if gradient else out

    return run


def pair_sets(out):
    rows = [t.tolist() for t in out]
    if len(out) == 4:
        return set(zip(rows[0], rows[1])), set(zip(rows[2], rows[3]))
    return set(zip(*rows))


def expect_same_pairs(expected):
    def check(out):
        assert pair_sets(out) == pair_sets(expected), "outputs differ from slade_ext's"

    return check


def expect_close(expected, rtol=1e-4, atol=1e-5):
    def check(out):
        for a, b in zip(out if isinstance(out, tuple) else (out,), expected if isinstance(expected, tuple) else (expected,)):
            torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol)

    return check
