"""Mining and losses against the global batch under torch.distributed, as pytorch-metric-learning's
DistributedLossWrapper / DistributedMinerWrapper, around slade_ext's fused losses and miners (or PML's: any object
with PML's forward signature).

    loss_fn = DistributedLossWrapper(losses.MultiSimilarityLoss())
    miner = DistributedMinerWrapper(miners.MultiSimilarityMiner())
    indices_tuple = miner(local_embeddings, local_labels)       # pairs of the global batch
    loss = loss_fn(local_embeddings, local_labels, indices_tuple)
    loss.backward()                                            # then DDP averages the gradients over ranks

Each rank gathers every rank's embeddings and labels, in rank order, so the global batch is the concatenation a
single process would see. Its own rows keep their autograd history; the other ranks' rows are values. The loss is
the global batch's loss times the world size, as PML returns it: then the gradient reaching each rank's rows is the
world size times the single-process gradient of those rows, and DDP's average over ranks of the parameter
gradients equals the single-process parameter gradient. Ranks may hold batches of different sizes.

`efficient=True` (each rank mining only its own queries against the global reference set through `ref_emb`) is not
offered yet: to equal the single-process result, the mining kernels must skip each query's own row inside the
reference set while they mine (the multi-similarity miner's thresholds depend on every pair of the row), which
they cannot do today; removing those pairs afterwards, as PML does, changes the result.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["DistributedLossWrapper", "DistributedMinerWrapper", "gather_global"]

EFFICIENT_NOT_YET = ("efficient=True is not available: exact mining of local queries against the global batch needs "
                     "the kernels to skip each query's own row, which they do not support yet; use efficient=False")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_global(x: torch.Tensor | None, differentiable: bool = False) -> torch.Tensor | None:
    """Every rank's `x` concatenated in rank order (dim 0), for batches of any sizes.

    differentiable=False: this rank's part keeps its autograd history, the others are values (PML's scheme).
    differentiable=True: the gradient of every rank's copy flows back to the rows' owner and is summed there, so
    that when every rank computes the same loss of the global batch, each rank's rows get world size x their
    single-process gradient (what the training layer averages over ranks)."""
    if x is None or _world_size() == 1:
        return x
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
    sizes = [int(s) for s in sizes]
    pad = [0, 0] * (x.dim() - 1) + [0, max(sizes) - x.shape[0]]
    if differentiable:
        padded = _GatherRows.apply(torch.nn.functional.pad(x, pad), dist.get_rank(), world)
        parts = list(padded.split(max(sizes)))
    else:
        parts = [torch.empty((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in sizes]
        dist.all_gather(parts, torch.nn.functional.pad(x.detach(), pad).contiguous())
        parts[dist.get_rank()] = torch.nn.functional.pad(x, pad)  # the local rows with their gradient path
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _GatherRows(torch.autograd.Function):
    """all_gather of equal-sized blocks whose backward sums every rank's gradient of this rank's block (an
    all_reduce, run by every rank in its own backward, as every rank computes the same loss)."""

    @staticmethod
    def forward(ctx, block, rank, world):
        parts = [torch.empty_like(block) for _ in range(world)]
        dist.all_gather(parts, block.contiguous())
        ctx.rank, ctx.rows = rank, block.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


class DistributedLossWrapper(torch.nn.Module):
    """loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None) on the global batch; indices_tuple
    indexes the global batch (as DistributedMinerWrapper returns it)."""

    def __init__(self, loss, efficient: bool = False):
        super().__init__()
        if efficient:
            raise NotImplementedError(EFFICIENT_NOT_YET)
        self.loss, self.efficient = loss, efficient

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        world = _world_size()
        if world == 1:
            return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        loss = self.loss(gather_global(embeddings), gather_global(labels), indices_tuple, gather_global(ref_emb),
                         gather_global(ref_labels))
        return loss * world


class DistributedMinerWrapper(torch.nn.Module):
    """miner(embeddings, labels, ref_emb=None, ref_labels=None) on the global batch: the indices index it."""

    def __init__(self, miner, efficient: bool = False):
        super().__init__()
        if efficient:
            raise NotImplementedError(EFFICIENT_NOT_YET)
        self.miner, self.efficient = miner, efficient

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        if _world_size() == 1:
            return self.miner(embeddings, labels, ref_emb, ref_labels)
        return self.miner(gather_global(embeddings), gather_global(labels), gather_global(ref_emb),
                          gather_global(ref_labels))
