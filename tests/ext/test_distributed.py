"""slade_ext.distributed under torch.distributed (gloo, two processes on this machine, batches of unequal size),
with and without efficient=True: every miner returns the single-process indices of the concatenated batch (efficient:
this rank's anchors' share of them), every loss and the feature basis's losses their value times the world size with
each rank's rows getting the world size times their single-process gradient, DDP's average of the parameter
gradients equals the single-process gradient, and the basis's moving averages equal the single-process ones on every
rank (float64, tight tolerance)."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from slade_ext.distributed import DistributedLossWrapper, DistributedMinerWrapper
from helpers.distributed_checks import CHECKS, LOSSES, MINERS, WORLD, global_batch, run_rank

@pytest.mark.parametrize("check", list(CHECKS))
def test_two_ranks_equal_one_process(tmp_path, check):
    mp.spawn(run_rank, args=(str(tmp_path / "store"), check), nprocs=WORLD, join=True)


def test_single_process_is_a_pass_through():
    emb, labels = global_batch()
    for name, make in MINERS.items():
        got, want = DistributedMinerWrapper(make())(emb, labels), make()(emb, labels)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), name
    assert DistributedLossWrapper(LOSSES["contrastive"]())(emb, labels) == LOSSES["contrastive"]()(emb, labels)


def test_efficient_mode_needs_the_fused_classes():
    with pytest.raises(TypeError, match="efficient=False"):
        DistributedMinerWrapper(object(), efficient=True)
    with pytest.raises(TypeError, match="fused losses"):
        DistributedLossWrapper(torch.nn.MSELoss(), efficient=True)
