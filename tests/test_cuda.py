"""CUDA kernels against the CPU kernels, which are the spec: every op on CUDA tensors gives the CPU's index tuples
(same pairs, same order) and the CPU's floats (to tolerance).

Exact comparisons need inputs whose similarities round the same way under cuBLAS and the CPU's BLAS:
- float32 (and fp16/bf16) mining inputs are "sign" embeddings, +-1 entries with d a power of 4: the unit rows are
  +-1/sqrt(d), so every similarity is exact in any summation order (and many of them tie);
- continuous inputs are float64, where the two BLAS differ by ~1e-16, too little to flip a comparison in practice.
Continuous float32 inputs would now and then put a similarity within an ulp of a threshold and flip a pair.
"""
from __future__ import annotations

import pytest
import torch

from helpers.op_cases import SHAPES, assert_same_indices, labels, with_ties
from slade_ext import ops

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEVICE = "cuda"
CUDA_TILE_ELEMS = 1 << 26  # kCudaTileElems (csrc/include/slade/common.h)


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


EMBEDDINGS = {"sign32": sign_embeddings, "float64": gaussian}
# Rows longer than a CUDA block (256 threads), so compactions take several rounds.
CASES = SHAPES + [("medium_self", 600, None, 40), ("medium_ref", 300, 1000, 30)]


def case_inputs(kind, name, n, m, n_classes, d=16):
    make = EMBEDDINGS[kind]
    emb, lab = make(n, d, seed=0), labels(n, n_classes, seed=1)
    if m is None:
        return emb, lab, None, None
    return emb, lab, make(m, d, seed=2), labels(m, n_classes, seed=3)


# ---- running an op on both devices -----------------------------------------------------------------------------


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


def assert_indices_match_cpu(op, *args, device=None, **kwargs):
    """op on `device` (default DEVICE) returns the CPU's int64 index tuples, on that device. Returns them."""
    device = torch.device(device or DEVICE)
    want = op(*args, **kwargs)
    got = run_on(device, op, *args, **kwargs)
    for t in got:
        assert t.device.type == device.type and (device.index is None or t.device == device), t.device
    got = [t.cpu() for t in got]
    assert_same_indices(got, want)
    return got


def assert_stats_match_cpu(got, want, rtol, atol):
    for g, w in zip(got[:4], want[:4]):
        assert g.device.type == torch.device(DEVICE).type and g.dtype == w.dtype
        torch.testing.assert_close(g.cpu(), w, rtol=rtol, atol=atol)
    for g, w in zip(got[4:], want[4:]):
        assert torch.equal(g.cpu(), w)


def strided(x, device):
    """x on `device` with a column stride of 2 (moving a strided view would make it contiguous)."""
    wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=x.dtype, device=device)
    wide[:, ::2] = x.to(device)
    return wide[:, ::2]


def column_major(x, device):
    return x.to(device).t().contiguous().t()


# ---- miners ----------------------------------------------------------------------------------------------------

MINER_CONFIGS = [
    ("multi_similarity", dict(epsilon=0.1)),
    ("pair_margin", dict(pos_margin=0.2, neg_margin=0.1)),
    ("batch_hard", dict()),
    ("triplet_margin", dict(margin=0.2, type_of_triplets="all", max_triplets_per_anchor=5)),
    ("triplet_margin", dict(margin=-0.3, type_of_triplets="hard")),
    ("triplet_margin", dict(margin=0.3, type_of_triplets="semihard")),
    ("triplet_margin", dict(margin=0.1, type_of_triplets="easy", max_triplets_per_anchor=50)),
]
MINER_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(MINER_CONFIGS)]


def miner(name):
    return getattr(ops, f"mine_{name}")


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
@pytest.mark.parametrize("kind", list(EMBEDDINGS))
def test_miner_matches_cpu(kind, distance, case, config):
    name, kwargs = config
    emb, lab, ref, ref_lab = case_inputs(kind, *case)
    assert_indices_match_cpu(miner(name), emb, lab, ref, ref_lab, distance=distance, **kwargs)


@pytest.mark.parametrize("case", SHAPES, ids=[c[0] for c in SHAPES])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_all_triplets_uncapped_match_cpu(distance, case):
    emb, lab, ref, ref_lab = case_inputs("sign32", *case)
    assert_indices_match_cpu(ops.mine_triplet_margin, emb, lab, ref, ref_lab, margin=0.2, distance=distance)


@pytest.mark.parametrize("cap", [1, 3, 1000])
def test_triplet_cap_matches_cpu(cap):
    emb, lab = sign_embeddings(600), labels(600, 7)
    got = assert_indices_match_cpu(ops.mine_triplet_margin, emb, lab, margin=0.2, max_triplets_per_anchor=cap)
    assert torch.bincount(got[0]).max() <= cap


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
def test_miner_ties_match_cpu(config):
    # Duplicated float64 rows tie exactly, so batch hard must pick the smallest index on both devices.
    name, kwargs = config
    emb = with_ties(gaussian(300))
    lab = labels(300, 4)
    assert_indices_match_cpu(miner(name), emb, lab, **kwargs)
    assert_indices_match_cpu(miner(name), emb, lab, emb.clone(), lab.clone(), **kwargs)


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
def test_miner_label_minus_one_matches_cpu(config):
    name, kwargs = config
    lab = labels(200, 3) - 1  # an ordinary label to the miners
    got = assert_indices_match_cpu(miner(name), sign_embeddings(200), lab, **kwargs)
    assert any(t.numel() for t in got)


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_miner_dtypes_match_cpu(dtype, config):
    name, kwargs = config
    emb, lab = sign_embeddings(150, dtype=dtype), labels(150, 5)
    ref, ref_lab = sign_embeddings(170, seed=4, dtype=dtype), labels(170, 5, seed=4)
    assert_indices_match_cpu(miner(name), emb, lab, **kwargs)
    assert_indices_match_cpu(miner(name), emb, lab, ref, ref_lab, **kwargs)


@pytest.mark.parametrize("layout", [strided, column_major])
@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
def test_miner_non_contiguous_and_int32_labels(config, layout):
    name, kwargs = config
    emb, lab = sign_embeddings(120), labels(120, 5)
    ref, ref_lab = sign_embeddings(90, seed=6), labels(90, 5, seed=6)
    want = miner(name)(emb, lab, ref, ref_lab, **kwargs)
    got = miner(name)(layout(emb, DEVICE), lab.to(DEVICE, torch.int32), layout(ref, DEVICE), ref_lab.to(DEVICE),
                      **kwargs)
    assert_same_indices([t.cpu() for t in got], want)


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
def test_miner_empty_and_one_class(config):
    name, kwargs = config
    empty, no_labels = torch.zeros(0, 16), torch.zeros(0, dtype=torch.long)
    got = assert_indices_match_cpu(miner(name), empty, no_labels, **kwargs)
    assert all(t.numel() == 0 for t in got)
    got = assert_indices_match_cpu(miner(name), sign_embeddings(5), labels(5, 2), empty, no_labels, **kwargs)
    assert all(t.numel() == 0 for t in got)
    # One class: positives only, so nothing but pair-margin/multi-similarity positives can be selected.
    assert_indices_match_cpu(miner(name), sign_embeddings(300), torch.zeros(300, dtype=torch.long), **kwargs)


# Several CUDA tiles: rows_per_tile = 2^26 // M < N, so the second tile starts at row_begin > 0 (and, against
# itself, excludes (i, i) by global index).
LARGE_CASES = [("ref_40000", 2048, 40_000, 4000), ("self_10000", 10_000, None, 2000)]
LARGE_CONFIGS = [
    ("multi_similarity", dict(epsilon=0.1)),
    ("pair_margin", dict(pos_margin=0.9, neg_margin=0.7)),
    ("batch_hard", dict()),
    ("triplet_margin", dict(margin=0.1, type_of_triplets="semihard")),
    ("triplet_margin", dict(margin=1.0, type_of_triplets="all", max_triplets_per_anchor=7)),
    ("triplet_margin", dict(margin=0.05, type_of_triplets="hard")),
]


@pytest.mark.parametrize("config", LARGE_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LARGE_CONFIGS)])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
@pytest.mark.parametrize("case", LARGE_CASES, ids=[c[0] for c in LARGE_CASES])
def test_miner_spanning_several_tiles_matches_cpu(case, distance, config):
    _, n, m, n_classes = case
    assert CUDA_TILE_ELEMS // (m or n) < n
    name, kwargs = config
    emb, lab, ref, ref_lab = clustered(n, m, n_classes)
    got = assert_indices_match_cpu(miner(name), emb, lab, ref, ref_lab, distance=distance, **kwargs)
    assert got[0].numel() > 0


@pytest.mark.parametrize("config", LARGE_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LARGE_CONFIGS)])
def test_mining_is_deterministic(config):
    name, kwargs = config
    emb, lab, ref, ref_lab = (t.to(DEVICE) for t in clustered(2048, 40_000, 4000))
    first = miner(name)(emb, lab, ref, ref_lab, **kwargs)
    second = miner(name)(emb, lab, ref, ref_lab, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# ---- confident-pair selection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["literal", "agree"])
@pytest.mark.parametrize("n,n_classes", [(1, 1), (7, 3), (120, 2), (600, 7)])
def test_confident_pairs_match_cpu(n, n_classes, mode):
    pseudo = labels(n, n_classes + 1) - 1 if mode == "agree" else None  # agree: some -1 (unknown) labels
    for emb, basis, t_pos, t_neg in [
        (sign_embeddings(n, 64), sign_basis(16, 64), 0.3, -0.2),
        (gaussian(n), gaussian(6, seed=9), 0.5, -0.4),
    ]:
        assert_indices_match_cpu(ops.select_confident_pairs, emb, basis, t_pos, t_neg, pseudo, mode)
    # Overlapping thresholds select nothing.
    got = assert_indices_match_cpu(ops.select_confident_pairs, gaussian(n), gaussian(6, seed=9), 0.1, 0.2, pseudo,
                                   mode)
    assert all(t.numel() == 0 for t in got)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_confident_pairs_half_inputs_match_cpu(dtype):
    emb, basis = sign_embeddings(200, 64, dtype=dtype), sign_basis(16, 64, dtype=dtype)
    assert_indices_match_cpu(ops.select_confident_pairs, emb, basis, 0.3, -0.2, labels(200, 4) - 1, "agree")
    assert_indices_match_cpu(ops.select_confident_pairs, emb, basis, 0.3, -0.2)


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_confident_pairs_spanning_several_tiles_match_cpu(mode):
    emb, lab, _, _ = clustered(10_000, None, 2000)
    pseudo = lab.clone()
    pseudo[::7] = -1
    basis = gaussian(8, seed=11)
    got = assert_indices_match_cpu(ops.select_confident_pairs, emb, basis, 0.99, -0.9,
                                   pseudo if mode == "agree" else None, mode)
    assert got[0].numel() > 0 and got[2].numel() > 0


# ---- basis similarity and pair statistics ----------------------------------------------------------------------


def similarity_and_grads(device, emb, basis, ref, weights):
    move = mover(device)
    leaves = [move(t).clone().requires_grad_() for t in (emb, basis, ref) if t is not None]
    sim = ops.basis_similarity(leaves[0], leaves[1], leaves[2] if ref is not None else None)
    (sim * move(weights).to(sim.dtype)).sum().backward()
    return [sim] + [t.grad for t in leaves]


TOLERANCE = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-4, 1e-5), torch.float16: (2e-2, 2e-2),
             torch.bfloat16: (2e-2, 2e-2)}


@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shapes", [((1, 16), None), ((33, 16), None), ((33, 16), (70, 16)), ((3, 10, 16), (3, 12, 16))],
                         ids=str)
def test_basis_similarity_and_grads_match_cpu(shapes, dtype):
    emb_shape, ref_shape = shapes
    emb = gaussian(1, emb_shape[-1] * torch.Size(emb_shape[:-1]).numel()).reshape(emb_shape).to(dtype)
    ref = None
    if ref_shape is not None:
        ref = gaussian(1, ref_shape[-1] * torch.Size(ref_shape[:-1]).numel(), seed=2).reshape(ref_shape).to(dtype)
    basis = gaussian(6, seed=7, dtype=dtype)
    weights = torch.randn(*emb_shape[:-1], (ref_shape or emb_shape)[-2], generator=torch.Generator().manual_seed(3))
    rtol, atol = TOLERANCE[dtype]
    want = similarity_and_grads("cpu", emb, basis, ref, weights)
    got = similarity_and_grads(DEVICE, emb, basis, ref, weights)
    for g, w in zip(got, want):
        assert g.device.type == torch.device(DEVICE).type and g.dtype == w.dtype
        torch.testing.assert_close(g.cpu(), w, rtol=rtol, atol=atol)


def stats_and_grads(device, emb, basis, lab, ref=None, ref_lab=None):
    move = mover(device)
    leaves = [move(t).clone().requires_grad_() for t in (emb, basis, ref) if t is not None]
    stats = ops.basis_pair_stats(leaves[0], leaves[1], move(lab), leaves[2] if ref is not None else None,
                                 move(ref_lab))
    mu_pos, var_pos, mu_neg, var_neg = stats[:4]
    (mu_pos - 2 * mu_neg + 3 * var_pos + 0.5 * var_neg).backward()
    return [s.detach() for s in stats], [t.grad for t in leaves]


def assert_stats_and_grads_match_cpu(emb, basis, lab, ref=None, ref_lab=None, rtol=1e-4, atol=1e-6):
    want_stats, want_grads = stats_and_grads("cpu", emb, basis, lab, ref, ref_lab)
    got_stats, got_grads = stats_and_grads(DEVICE, emb, basis, lab, ref, ref_lab)
    assert_stats_match_cpu(got_stats, want_stats, rtol, atol)
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g.cpu(), w, rtol=rtol, atol=atol)
    return got_stats


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", SHAPES, ids=[c[0] for c in SHAPES])
def test_pair_stats_and_grads_match_cpu(case, dtype):
    _, n, m, n_classes = case
    emb, basis, lab = gaussian(n, dtype=dtype), gaussian(6, seed=7, dtype=dtype), labels(n, n_classes + 1) - 1
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    if m is None:
        assert_stats_and_grads_match_cpu(emb, basis, lab, **tol)
    else:
        ref, ref_lab = gaussian(m, seed=2, dtype=dtype), labels(m, n_classes + 1, seed=3) - 1
        assert_stats_and_grads_match_cpu(emb, basis, lab, ref, ref_lab, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pair_stats_half_inputs_match_cpu(dtype):
    emb, basis, lab = sign_embeddings(100, 64, dtype=dtype), sign_basis(16, 64, dtype=dtype), labels(100, 4)
    assert_stats_and_grads_match_cpu(emb, basis, lab, rtol=1e-3, atol=1e-3)


def test_pair_stats_edge_cases_match_cpu():
    basis = gaussian(6, seed=7)
    # Every label unknown: no pairs at all (zero moments, zero counts).
    stats = assert_stats_and_grads_match_cpu(gaussian(20), basis, torch.full((20,), -1))
    assert int(stats[4]) == 0 and int(stats[5]) == 0
    # Ties and a non-contiguous layout.
    assert_stats_and_grads_match_cpu(with_ties(gaussian(50)), basis, labels(50, 3))
    emb = gaussian(40)
    want = ops.basis_pair_stats(emb, basis, labels(40, 3))
    got = ops.basis_pair_stats(strided(emb, DEVICE), basis.to(DEVICE), labels(40, 3).to(DEVICE, torch.int32))
    assert_stats_match_cpu(got, want, rtol=1e-9, atol=1e-12)


def test_pair_stats_spanning_several_tiles_match_cpu_and_are_deterministic():
    emb, lab, ref, ref_lab = clustered(2048, 40_000, 50)
    lab[::5] = -1
    basis = gaussian(8, seed=11)
    assert_stats_and_grads_match_cpu(emb, basis, lab, ref, ref_lab, rtol=1e-8, atol=1e-10)
    emb, lab, ref, ref_lab, basis = (t.float().to(DEVICE) if t.is_floating_point() else t.to(DEVICE)
                                     for t in (emb, lab, ref, ref_lab, basis))
    first = ops.basis_pair_stats(emb, basis, lab, ref, ref_lab)
    second = ops.basis_pair_stats(emb, basis, lab, ref, ref_lab)
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # bit-identical: no atomics in the reduction


# ---- devices and memory ----------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    emb, lab, ref, ref_lab = case_inputs("float64", "medium_ref", 300, 1000, 30)
    for name, kwargs in MINER_CONFIGS:
        assert_indices_match_cpu(miner(name), emb, lab, ref, ref_lab, device="cuda:1", **kwargs)
    basis = gaussian(6, seed=7)
    want = ops.basis_pair_stats(emb, basis, lab)
    got = run_on("cuda:1", ops.basis_pair_stats, emb, basis, lab)
    assert all(t.device == torch.device("cuda:1") for t in got)
    torch.testing.assert_close([t.cpu() for t in got], list(want), rtol=1e-9, atol=1e-12)


def test_fused_ops_memory_stays_tile_sized():
    # N = M = 65536: a dense float32 similarity matrix would take 16 GiB; the fused ops hold one 256 MiB tile (plus,
    # for triplets, the tile's compacted negatives) and their output.
    n, d = 65_536, 64
    g = torch.Generator(device=DEVICE).manual_seed(0)
    emb = torch.randn(n, d, device=DEVICE, generator=g)
    lab = torch.randint(0, 100, (n,), device=DEVICE, generator=g)
    basis = torch.randn(32, d, device=DEVICE, generator=g)
    dense_bytes = n * n * 4
    runs = {
        "batch_hard": lambda: ops.mine_batch_hard(emb, lab),
        # Similarities of random 64-d vectors have std 1/8: these margins select a few hundred thousand pairs.
        "pair_margin": lambda: ops.mine_pair_margin(emb, lab, pos_margin=-0.5, neg_margin=0.5),
        "triplet_margin": lambda: ops.mine_triplet_margin(emb, lab, max_triplets_per_anchor=2),
        "pair_stats": lambda: ops.basis_pair_stats(emb, basis, lab),
        "confident_pairs": lambda: ops.select_confident_pairs(emb, basis, 0.6, -0.6),
    }
    for name, run in runs.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        assert peak < dense_bytes / 8, f"{name}: peak {peak / 2**30:.2f} GiB"
        del out
    assert torch.equal(ops.mine_batch_hard(emb, lab)[0], torch.arange(n, device=DEVICE))  # every anchor has both
