"""Mining and losses against the global batch under torch.distributed, as pytorch-metric-learning's
DistributedLossWrapper / DistributedMinerWrapper, around slade_ext's fused losses and miners (or, with
efficient=False, PML's: any object with PML's forward signature), plus the feature basis with its statistics reduced
over ranks.

    loss_fn = DistributedLossWrapper(losses.MultiSimilarityLoss(), efficient=True)
    miner = DistributedMinerWrapper(miners.MultiSimilarityMiner(), efficient=True)
    indices_tuple = miner(local_embeddings, local_labels)
    loss = loss_fn(local_embeddings, local_labels, indices_tuple)
    loss.backward()                                  # then DDP averages the parameter gradients over ranks

Every rank gathers every rank's embeddings and labels in rank order, so the global batch is the concatenation a
single process would see (ranks may hold batches of different sizes). Each wrapper returns world size x the
single-process loss of the global batch (PML's convention); the gradient reaching each rank's own rows is world size
x their single-process gradient, so DDP's average over ranks of the parameter gradients is the single-process one.

- efficient=False: every rank mines and computes the loss of the whole global batch; the other ranks' rows are values
  (PML's scheme). Indices index the global batch.
- efficient=True: each rank mines only its own rows (the queries) against the global batch, through the kernels'
  `query_rows` (the self pair (i, i) of the global batch is skipped inside the kernels, so the per-row thresholds
  equal the single-process ones), and computes only its rows' share of the loss; the normalisers (pair and anchor
  counts) are summed over ranks, and the references' gradients go back to their owners through a differentiable
  all-gather (its backward sums every rank's gradient of a block). Each rank's work is 1/world of efficient=False:
  B x (world B) pairs, never the global x global matrix. Indices: anchors index this rank's batch, positives and
  negatives the global batch. Loss and gradients equal efficient=False's (PML's efficient mode, which treats the
  other ranks' rows as constants, does not: PML's docs say so). It needs slade_ext's fused losses and miners.
- DistributedFeatureBasis: L_CE and L_SD of a FeatureBasis with the pair statistics (mu+/mu-/v+/v-) and counts
  summed over ranks, so every rank updates the same moving averages and gets the same selection thresholds; each
  rank's share is its rows against the global batch, as with efficient=True.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ._compat import runs_fused
from .basis import FeatureBasis
from .loss_ops import pair_lists
from .losses import combine_parts
from .pair_rules import all_pair_counts, as_pairs

__all__ = ["DistributedLossWrapper", "DistributedMinerWrapper", "DistributedFeatureBasis", "gather_global",
           "sum_over_ranks"]


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather(x: torch.Tensor, differentiable: bool):
    """(every rank's x concatenated in rank order, this rank's first row in it)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
    sizes = [int(s) for s in sizes]
    pad = [0, 0] * (x.dim() - 1) + [0, max(sizes) - x.shape[0]]
    if differentiable:
        padded = _GatherRows.apply(torch.nn.functional.pad(x, pad), rank, world)
        parts = list(padded.split(max(sizes)))
    else:
        parts = [torch.empty((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in sizes]
        dist.all_gather(parts, torch.nn.functional.pad(x.detach(), pad).contiguous())
        parts[rank] = torch.nn.functional.pad(x, pad)  # the local rows with their gradient path
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]), sum(sizes[:rank])


def gather_global(x: torch.Tensor | None, differentiable: bool = False) -> torch.Tensor | None:
    """Every rank's `x` concatenated in rank order (dim 0), for batches of any sizes.

    differentiable=False: this rank's part keeps its autograd history, the others are values (PML's scheme).
    differentiable=True: the gradient of every rank's copy flows back to the rows' owner and is summed there, so
    that when every rank computes the same loss of the global batch, each rank's rows get world size x their
    single-process gradient (what the training layer averages over ranks)."""
    if x is None or _world_size() == 1:
        return x
    return _gather(x, differentiable)[0]


class _GatherRows(torch.autograd.Function):
    """all_gather of equal-sized blocks whose backward sums every rank's gradient of this rank's block (an
    all_reduce, run by every rank in its own backward)."""

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


class _SumOverRanks(torch.autograd.Function):
    """all_reduce (sum) whose backward sums the gradients too: every rank computes the same function of the sum."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous().clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """x summed over ranks, differentiably: when every rank computes the same function of the sum, each rank's x
    gets world size x its single-process gradient (as gather_global(differentiable=True))."""
    return _SumOverRanks.apply(x)


def _summed(x: torch.Tensor) -> torch.Tensor:
    """x summed over ranks, as a value."""
    x = x.detach().contiguous().clone()
    dist.all_reduce(x)
    return x


def _as_world_loss(share: torch.Tensor, world: int) -> torch.Tensor:
    """world x (the sum over ranks of `share`) as the value, world x `share` as the gradient path: the convention
    of the module docstring when each rank computes its share of the loss."""
    return world * share + (world * (_summed(share) - share)).detach()


def _require_fused(obj, kind: str) -> None:
    if not runs_fused(obj):
        raise TypeError(f"efficient=True needs one of slade_ext's fused {kind} without a fallback (got "
                        f"{type(obj).__name__}); wrap it with efficient=False")


class DistributedLossWrapper(torch.nn.Module):
    """loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None) of the global batch; indices_tuple
    as DistributedMinerWrapper with the same `efficient` returns it."""

    def __init__(self, loss, efficient: bool = False):
        super().__init__()
        if efficient:
            _require_fused(loss, "losses")
            if not hasattr(loss, "_rows"):  # the per-row state the ranks add up
                raise TypeError(f"efficient=True supports MultiSimilarityLoss and ContrastiveLoss, not "
                                f"{type(loss).__name__}; wrap it with efficient=False")
            if not loss.default_reduction():  # the ranks add up the default reducer's numerators
                raise TypeError(f"efficient=True supports {type(loss).__name__} with its default reducer only, "
                                f"not {type(loss.reducer).__name__}; wrap it with efficient=False")
        self.loss, self.efficient = loss, bool(efficient)

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        world = _world_size()
        if world == 1:
            return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        if not self.efficient:
            loss = self.loss(gather_global(embeddings), gather_global(labels), indices_tuple,
                             gather_global(ref_emb), gather_global(ref_labels))
            return loss * world
        return _as_world_loss(self._share(embeddings, labels, indices_tuple, ref_emb, ref_labels), world)

    def _share(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """This rank's share of the global loss: its rows' numerators over the global normalisers."""
        loss = self.loss
        if ref_emb is None and ref_labels is not None:
            raise ValueError("ref_labels was given without ref_emb")
        if ref_emb is None:
            refs, begin = _gather(embeddings, differentiable=True)
        else:
            refs, _ = _gather(ref_emb, differentiable=True)
        ref_labels_all = None if labels is None else gather_global(labels if ref_emb is None else ref_labels)
        if indices_tuple is None:
            if labels is None:
                raise ValueError("labels and indices_tuple cannot both be None")
            if ref_emb is None:  # against the global batch itself: the kernels skip the self pairs
                rows = loss._rows(refs, ref_labels_all, None, None, None, (begin, begin + embeddings.shape[0]))
                n_pos, n_neg = all_pair_counts(ref_labels_all, None, self_mode=True)
            else:
                rows = loss._rows(embeddings, labels, refs, ref_labels_all, None)
                n_pos, n_neg = (_summed(c) for c in all_pair_counts(labels, ref_labels_all, self_mode=False))
            enough = (n_pos > 1) | (n_neg > 1)
        else:
            pairs = as_pairs(indices_tuple, embeddings.device)
            counts = torch.tensor([max(len(pairs[0]), len(pairs[1])), max(len(pairs[2]), len(pairs[3]))],
                                  device=embeddings.device)
            enough = (_summed(counts) > 1).any()
            if not bool(enough):
                return (embeddings * 0).sum()
            names = ("indices_tuple[0]", "indices_tuple[1]", "indices_tuple[-2]", "indices_tuple[-1]")
            lists = pair_lists(*pairs, embeddings.shape[0], refs.shape[0], loss.as_mask, names)
            rows = loss._rows(embeddings, None, refs, None, lists)
        num, den = loss._parts(rows)
        share = combine_parts(num, _summed(den)).to(embeddings.dtype)
        return torch.where(enough, share, (embeddings * 0).sum())


class DistributedMinerWrapper(torch.nn.Module):
    """miner(embeddings, labels, ref_emb=None, ref_labels=None). efficient=False: pairs of the global batch, indices
    into it. efficient=True: this rank's rows as anchors (their indices in this rank's batch) against the global
    batch (or the global ref_emb), positives and negatives indexing that."""

    def __init__(self, miner, efficient: bool = False):
        super().__init__()
        if efficient and not callable(getattr(miner, "mine_rows", None)):
            raise TypeError(f"efficient=True needs one of slade_ext's fused miners (got {type(miner).__name__}); "
                            "wrap it with efficient=False")
        self.miner, self.efficient = miner, bool(efficient)

    def forward(self, embeddings, labels=None, ref_emb=None, ref_labels=None):
        if _world_size() == 1:
            return self.miner(embeddings, labels, ref_emb, ref_labels)
        if not self.efficient:
            return self.miner(gather_global(embeddings), gather_global(labels), gather_global(ref_emb),
                              gather_global(ref_labels))
        if ref_emb is not None:  # a separate reference set: the local rows against the global one are exact as is
            return self.miner(embeddings, labels, gather_global(ref_emb), gather_global(ref_labels))
        with torch.no_grad():
            everyone, begin = _gather(embeddings.detach(), differentiable=False)
        out = self.miner.mine_rows(everyone, gather_global(labels), (begin, begin + embeddings.shape[0]))
        anchors = (0, 2) if len(out) == 4 else (0,)
        return tuple(t - begin if k in anchors else t for k, t in enumerate(out))


class DistributedFeatureBasis(torch.nn.Module):
    """A FeatureBasis whose ce_loss and sd_loss are those of the global batch (module docstring): each rank computes
    its rows' share, the normalisers and the pair statistics are summed over ranks. The returned losses follow the
    wrappers' convention (world size x the single-process value). Without torch.distributed it is the basis itself.

        basis = DistributedFeatureBasis(FeatureBasis(K, d))
        loss = basis.ce_loss(f_labeled, y) + basis.sd_loss(f_unlabeled, pseudo_labels)
        miner = DistributedMinerWrapper(ConfidentPairMiner(basis.basis), efficient=True)
    """

    def __init__(self, basis: FeatureBasis):
        super().__init__()
        if not isinstance(basis, FeatureBasis):
            raise TypeError(f"basis must be a slade_ext.basis.FeatureBasis, got {type(basis).__name__}")
        self.basis = basis

    def ce_loss(self, emb, labels):
        world = _world_size()
        if world == 1:
            return self.basis.ce_loss(emb, labels)
        total, count = self.basis.ce_parts(emb, labels)
        return _as_world_loss(self.basis.ce_from_parts(emb, total, _summed(count)), world)

    def sd_loss(self, emb, pseudo_labels):
        world = _world_size()
        if world == 1:
            return self.basis.sd_loss(emb, pseudo_labels)
        everyone, begin = _gather(emb, differentiable=True)
        stats = torch.ops.slade.basis_pair_stats(everyone, self.basis.weight, gather_global(pseudo_labels), None,
                                                 None, begin, begin + emb.shape[0])
        mu_p, var_p, mu_n, var_n, n_p, n_n = stats
        # moments -> sums (n, sum s, sum s^2) per side, in float64, summed over ranks -> the global batch's moments
        mu_p, var_p, mu_n, var_n = (t.to(torch.float64) for t in (mu_p, var_p, mu_n, var_n))
        n_p, n_n = n_p.to(torch.float64), n_n.to(torch.float64)
        sums = torch.stack([n_p, mu_p * n_p, (var_p + mu_p * mu_p) * n_p, n_n, mu_n * n_n, (var_n + mu_n * mu_n) * n_n])
        total = sum_over_ranks(sums)
        moments = []
        for side in (0, 3):
            n = total[side].detach()
            mu = torch.where(n > 0, total[side + 1] / n.clamp(min=1), 0.0)
            var = torch.where(n > 0, (total[side + 2] / n.clamp(min=1) - mu * mu).clamp(min=0), 0.0)
            moments.append((mu.to(stats[0].dtype), var.to(stats[0].dtype), n.round().long()))
        (mu_p, var_p, n_p), (mu_n, var_n, n_n) = moments
        loss = self.basis.sd_loss_from_stats(mu_p, var_p, mu_n, var_n, n_p, n_n)
        # every rank computed the same loss: its value once, the gradients (summed by _SumOverRanks) world x
        return loss + (world - 1) * loss.detach()

    def forward(self, *args, **kwargs):
        raise TypeError("call ce_loss or sd_loss")
