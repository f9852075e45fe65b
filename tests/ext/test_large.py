"""Large inputs. N * M > 2^31: index arithmetic stays 64-bit, checked against the reference row block by row block
(slow). N = M = 65,536 on CUDA: the fused ops' peak memory stays tile-sized."""
import pytest
import torch

from helpers.cuda_cases import cuda_only, skip_inexact_on_cuda
from slade_ext import ops, reference

INEXACT = (
    "continuous float32 points can round a similarity across a threshold differently under cuBLAS; the CUDA "
    "kernels meet the CPU ones over several CUDA tiles in test_mining.py / test_selection.py (*_several_cuda_tiles)"
)

N = 48_000  # N * N = 2.30e9 > 2^31 - 1
CHUNK = 1_000
# Row blocks checked against the reference: the start, the middle, and every row whose flat index i * M + j
# passes 2^31 (i > 44,739).
CHECKED_BLOCKS = [0, 20_000] + list(range(44_000, N, CHUNK))


def points(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g)


def rows_of(indices, begin, end):
    """The part of a row-major index tuple whose anchors lie in [begin, end)."""
    anchors = indices[0]
    lo = torch.searchsorted(anchors, torch.tensor(begin))
    hi = torch.searchsorted(anchors, torch.tensor(end))
    return tuple(t[lo:hi] for t in indices)


def assert_equal_by_row_blocks(got, reference_rows, n):
    for begin in CHECKED_BLOCKS:
        end = min(n, begin + CHUNK)
        want = reference_rows(begin, end)
        for g, w in zip(rows_of(got, begin, end), want):
            assert torch.equal(g, w), (begin, end)


@pytest.mark.slow
def test_cross_batch_mining_beyond_int32(device):
    skip_inexact_on_cuda(device, INEXACT)
    emb, ref = points(N, 1), points(N, 2)
    g = torch.Generator().manual_seed(3)
    lab, ref_lab = torch.randint(0, 100, (N,), generator=g), torch.randint(0, 100, (N,), generator=g)
    assert emb.shape[0] * ref.shape[0] > 2**31

    hard = ops.mine_batch_hard(emb, lab, ref, ref_lab)
    assert hard[0].numel() == N

    def batch_hard_rows(begin, end):
        a, p, n = reference.mine_batch_hard(emb[begin:end], lab[begin:end], ref, ref_lab)
        return a + begin, p, n

    assert_equal_by_row_blocks(hard, batch_hard_rows, N)

    # Tight margins keep the output small: positives nearly opposite, negatives nearly identical.
    pairs = ops.mine_pair_margin(emb, lab, ref, ref_lab, pos_margin=-0.99999, neg_margin=0.99999)
    assert pairs[0].numel() > 0 and pairs[2].numel() > 0

    def margin_rows(begin, end):
        a1, p, a2, n = reference.mine_pair_margin(
            emb[begin:end], lab[begin:end], ref, ref_lab, pos_margin=-0.99999, neg_margin=0.99999
        )
        return a1 + begin, p, a2 + begin, n

    assert_equal_by_row_blocks(pairs[:2], lambda b, e: margin_rows(b, e)[:2], N)
    assert_equal_by_row_blocks(pairs[2:], lambda b, e: margin_rows(b, e)[2:], N)


@pytest.mark.slow
def test_selection_beyond_int32(device):
    skip_inexact_on_cuda(device, INEXACT)
    emb = points(N, 4)
    basis = torch.eye(2)
    t_pos, t_neg = 0.99999, -0.99999
    got = ops.select_confident_pairs(emb, basis, t_pos, t_neg)
    assert got[0].numel() > 0 and got[2].numel() > 0
    unit = torch.nn.functional.normalize(emb, dim=1)

    def selection_rows(begin, end):
        s = unit[begin:end] @ unit.T
        s[torch.arange(end - begin), torch.arange(begin, end)] = float("nan")  # no self-pairs
        a1, p = torch.where(s >= t_pos)
        a2, n = torch.where(s <= t_neg)
        return a1 + begin, p, a2 + begin, n

    assert_equal_by_row_blocks(got[:2], lambda b, e: selection_rows(b, e)[:2], N)
    assert_equal_by_row_blocks(got[2:], lambda b, e: selection_rows(b, e)[2:], N)
    # The reference check above must agree with the fused op's own reference on a small slice too.
    small = reference.select_confident_pairs(emb[:500], basis, t_pos, t_neg)
    assert [t.numel() for t in small] == [t.numel() for t in ops.select_confident_pairs(emb[:500], basis, t_pos, t_neg)]


def test_fused_ops_memory_stays_tile_sized(device):
    cuda_only(device, "CUDA-only check: peak device memory of the CUDA kernels (torch.cuda memory statistics)")
    # N = M = 65536: a dense float32 similarity matrix would take 16 GiB; the fused ops hold one 256 MiB tile (plus,
    # for triplets, the tile's compacted negatives) and their output.
    n, d = 65_536, 64
    g = torch.Generator(device=device).manual_seed(0)
    emb = torch.randn(n, d, device=device, generator=g)
    lab = torch.randint(0, 100, (n,), device=device, generator=g)
    basis = torch.randn(32, d, device=device, generator=g)
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
    assert torch.equal(ops.mine_batch_hard(emb, lab)[0], torch.arange(n, device=device))  # every anchor has both
