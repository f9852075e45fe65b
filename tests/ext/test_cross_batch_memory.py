"""pytorch-metric-learning's CrossBatchMemory around slade_ext's losses and miners equals it around PML's own: the
memory bank is the reference set, the self comparisons of the enqueued batch are dropped, the queue wraps around,
and `enqueue_mask` splits queries from what is enqueued. No FallbackWarning: the fused classes take PML's explicit
pair lists and references. (A fused path that never builds PML's pair lists is not written yet.)"""
from __future__ import annotations

import warnings
import zlib

import pytest
import torch

from slade_ext import losses, miners
from slade_ext._compat import FallbackWarning

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

D, MEMORY, BATCH = 16, 40, 12  # 4 batches of 12 in a memory of 40: the fourth wraps around


def _memory(module, loss_name, miner_name):
    miner = getattr(module[1], miner_name)() if miner_name else None
    return pml_losses.CrossBatchMemory(getattr(module[0], loss_name)(), D, memory_size=MEMORY, miner=miner)


@pytest.mark.parametrize("miner_name", [None, "MultiSimilarityMiner", "PairMarginMiner"])
@pytest.mark.parametrize("loss_name", ["MultiSimilarityLoss", "ContrastiveLoss"])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_batch_memory_equals_pml(loss_name, miner_name, masked):
    theirs = _memory((pml_losses, pml_miners), loss_name, miner_name)
    ours = _memory((losses, miners), loss_name, miner_name)
    g = torch.Generator().manual_seed(zlib.crc32(repr((loss_name, miner_name, masked)).encode()))
    for _ in range(12 if masked else 4):  # enough to wrap around: a masked step enqueues 4 of its 12 rows
        emb = torch.randn(BATCH, D, generator=g, dtype=torch.float64).requires_grad_()
        labels = torch.randint(0, 4, (BATCH,), generator=g)
        mask = (torch.arange(BATCH) % 3 == 0) if masked else None
        expected = theirs(emb, labels, enqueue_mask=mask)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)
            got = ours(emb, labels, enqueue_mask=mask)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        if expected.requires_grad:
            want, = torch.autograd.grad(expected, emb)
            have, = torch.autograd.grad(got, emb)
            torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.embedding_memory, theirs.embedding_memory, rtol=0, atol=0)
    assert ours.has_been_filled and theirs.has_been_filled
