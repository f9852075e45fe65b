"""N * M > 2^31: index arithmetic stays 64-bit. Checked against the reference, row block by row block."""
import pytest
import torch

from slade_ext import ops, reference

pytestmark = pytest.mark.slow

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


def test_cross_batch_mining_beyond_int32():
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


def test_selection_beyond_int32():
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
