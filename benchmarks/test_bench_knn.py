"""k-nearest neighbours for AccuracyCalculator: slade_ext.evaluation.KNN (tiled torch top-k) vs PML's default
knn_func FaissKNN (faiss.IndexFlatL2) vs a plain torch cdist + topk (the N x N matrix at once), same inputs.

The call is AccuracyCalculator's for a query set that is its own reference: knn(emb, k, emb, ref_includes_query=True),
squared L2 on the embeddings as given. k = 10 and k = 4096 (all but the query itself where N - 1 < 4096): above
faiss-GPU's 2048 cap, so FaissKNN on a GPU would fall back to the CPU there. Every competitor's output is checked
against slade_ext's before timing (same distances; the same neighbours but for float32 near-ties at the
k-th place).

Sizes: SLADE_BENCH_SIZES=tiny -> N = 256; full (default) -> N = 4096 and 16,384; d = 128 (conftest.DIM).
"""
from __future__ import annotations

import pytest
import torch

from cases import DEVICE, SIZES, clustered

from slade_ext.evaluation import KNN

inference = pytest.importorskip("pytorch_metric_learning.utils.inference")

KNN_SIZES = [256] if SIZES == "tiny" else [4096, 16384]
KS = [10, 4096]
IMPLS = ["slade_ext", "pml", "torch_cdist"]


def cdist_topk(emb, k):
    """The plain approach: the whole N x N distance matrix, topk of k + 1, then PML's drop-the-own-index rule."""
    distances = torch.cdist(emb, emb).pow_(2)
    d, i = torch.topk(distances, k + 1, dim=1, largest=False)
    return inference.return_results(d, i, True)


def impl_fn(impl, emb, k):
    if impl == "slade_ext":
        knn = KNN()
        return lambda: knn(emb, k, emb, True)
    if impl == "pml":
        pytest.importorskip("faiss", reason="PML's FaissKNN needs faiss")
        knn = inference.FaissKNN()
        return lambda: knn(emb, k, emb, True)
    return lambda: cdist_topk(emb, k)


def expect_same_knn(expected, atol=1e-3):
    """Same distances place by place, and the same neighbours but for near-ties at the k-th place: float32 rounding
    differs between the implementations, so neighbours whose distances differ by ~1e-6 can swap places or, at the
    k-th place, one of them can be left out. Checked in row blocks (no N x M table)."""
    exp_d, exp_i = (t.cpu() for t in expected)

    def check(out):
        d, i = (t.cpu() for t in out)
        assert d.shape == exp_d.shape and i.shape == exp_i.shape
        torch.testing.assert_close(d.float(), exp_d.float(), rtol=0, atol=atol)
        width = int(max(i.max(), exp_i.max())) + 1
        kth = exp_d[:, -1:].float()
        for s in range(0, len(i), 1024):
            rows = slice(s, s + 1024)
            ours = torch.zeros(len(exp_i[rows]), width, dtype=torch.bool).scatter_(1, exp_i[rows], True)
            theirs = torch.zeros_like(ours).scatter_(1, i[rows], True)
            only_ours = ~theirs.gather(1, exp_i[rows])  # places of slade_ext's neighbours the competitor lacks
            only_theirs = ~ours.gather(1, i[rows])
            assert (exp_d[rows].float()[only_ours] >= (kth[rows] - atol).expand_as(only_ours)[only_ours]).all(), \
                "a neighbour well inside the k-th distance is missing"
            assert (d[rows].float()[only_theirs] >= (kth[rows] - atol).expand_as(only_theirs)[only_theirs]).all(), \
                "a neighbour beyond the k-th distance is returned"

    return check


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", KNN_SIZES)
def test_knn(run_case, n, k, impl):
    emb, _ = clustered(n)
    k = min(k, n - 1)
    check = None if impl == "slade_ext" else expect_same_knn(KNN()(emb, k, emb, True))
    rounds = 1 if n * k > 1 << 24 else 3  # 16,384 x 4096 takes ~20 s a call on 2 CPU cores
    run_case(f"knn(k={k}) N={n} d={emb.shape[1]} {DEVICE.type}", impl, impl_fn(impl, emb, k), check, rounds=rounds)
