"""The per-rank checks of tests/ext/test_distributed.py, in an importable module so that spawned ranks can run them:
each rank compares what the distributed wrappers give it with a single-process computation on the concatenated
batch."""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from slade_ext import losses, miners
from slade_ext.distributed import DistributedLossWrapper, DistributedMinerWrapper, gather_global

WORLD = 2
SIZES = (5, 7)  # rows per rank: unequal on purpose
D = 8


def global_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(sum(SIZES), D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (sum(SIZES),), generator=g)
    return emb, labels


def local_slice(rank):
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


MINERS = {
    "multi_similarity": lambda: miners.MultiSimilarityMiner(epsilon=0.1),
    "pair_margin": lambda: miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
    "batch_hard": lambda: miners.BatchHardMiner(),
    "triplet_margin": lambda: miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
}
LOSSES = {
    "multi_similarity": lambda: losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
    "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
}


def _check_miners_and_losses(rank):
    emb, labels = global_batch()
    mine = local_slice(rank)
    for name, make in MINERS.items():
        got = DistributedMinerWrapper(make())(emb[mine], labels[mine])
        want = make()(emb, labels)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), f"miner {name}"
    for name, make in LOSSES.items():
        for miner_name in (None, "multi_similarity"):
            local = emb[mine].clone().requires_grad_()
            tuples = None if miner_name is None else DistributedMinerWrapper(MINERS[miner_name]())(local, labels[mine])
            loss = DistributedLossWrapper(make())(local, labels[mine], tuples)
            loss.backward()
            full = emb.clone().requires_grad_()
            single = make()(full, labels, None if miner_name is None else MINERS[miner_name]()(full, labels))
            single.backward()
            case = f"loss {name} with miner {miner_name}"
            torch.testing.assert_close(loss, WORLD * single, rtol=1e-12, atol=1e-12, msg=case)
            torch.testing.assert_close(local.grad, WORLD * full.grad[mine], rtol=1e-10, atol=1e-12, msg=case)


def _check_ddp_parameter_gradients(rank):
    emb, labels = global_batch(seed=1)
    torch.manual_seed(0)
    model = torch.nn.Linear(D, D).double()
    reference = torch.nn.Linear(D, D).double()
    reference.load_state_dict(model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    mine = local_slice(rank)
    out = ddp(emb[mine])
    tuples = DistributedMinerWrapper(MINERS["multi_similarity"]())(out, labels[mine])
    DistributedLossWrapper(LOSSES["multi_similarity"]())(out, labels[mine], tuples).backward()  # DDP averages
    full = reference(emb)
    LOSSES["multi_similarity"]()(full, labels, MINERS["multi_similarity"]()(full, labels)).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)


def _check_gather(rank):
    weights = torch.arange(1, sum(SIZES) + 1, dtype=torch.float32)[:, None]
    for differentiable in (False, True):
        x = torch.full((SIZES[rank], 3), float(rank), requires_grad=True)
        gathered = gather_global(x, differentiable=differentiable)
        assert gathered.shape == (sum(SIZES), 3)
        assert torch.equal(gathered[: SIZES[0]], torch.zeros(SIZES[0], 3))
        assert torch.equal(gathered[SIZES[0]:], torch.ones(SIZES[1], 3))
        (gathered * weights).sum().backward()  # the same loss on every rank
        # Without: only this rank's copy reaches x; with: the copies of both ranks are summed at the owner.
        expected = (WORLD if differentiable else 1) * weights[local_slice(rank)].expand(-1, 3)
        assert torch.equal(x.grad, expected), differentiable


CHECKS = {"miners_and_losses": _check_miners_and_losses, "ddp": _check_ddp_parameter_gradients,
          "gather": _check_gather}


def run_rank(rank, store_path, check):
    """One rank of a two-process gloo group (a FileStore: no network) running CHECKS[check]. A failed check raises
    (torch.multiprocessing.spawn reports it); a passed one waits for the other rank and leaves at once: tearing the
    gloo group down at interpreter exit now and then aborted a rank after every check had passed."""
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    CHECKS[check](rank)
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
