"""slade_ext.distributed under torch.distributed (gloo, two processes on this machine, batches of unequal size):
every miner returns the single-process indices of the concatenated batch, every loss its value times the world
size with each rank's rows getting the world size times their single-process gradient, and DDP's average of the
parameter gradients equals the single-process gradient (float64, tight tolerance)."""
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


def test_efficient_mode_says_why_it_is_missing():
    with pytest.raises(NotImplementedError, match="skip each query's own row"):
        DistributedMinerWrapper(MINERS["batch_hard"](), efficient=True)
    with pytest.raises(NotImplementedError, match="efficient=False"):
        DistributedLossWrapper(LOSSES["contrastive"](), efficient=True)
