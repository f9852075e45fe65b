"""Triplet margin loss in blocks of anchor rows (slade_ext.row_blocks): the computation behind
slade_ext.losses.TripletMarginLoss. PML's builds every triplet of the batch as an N x M x M mask and then lists
them (past 2^31 entries it fails, PML issue #688); the mean over triplets needs neither.

With u the distance (minus the similarity for a similarity) and x = u_ap + margin, an anchor's loss over its
negatives is sum_n relu(x - u_an) = c(x) * x - S(x), where c(x) counts the negatives with u_an < x and S(x) sums
their u_an: one sort of the anchor's negatives and a binary search per positive, O(M log M) per anchor instead of
O(P x M). c(x) summed over positives is how many triplets have a non-zero loss (PML's AvgNonZeroReducer divides
by it). Listed pairs carry their multiplicities, so a miner's pairs give PML's triplets (every positive pair with
every negative pair of the same anchor). Sums are in float64: c * x - S cancels.
"""
from __future__ import annotations

import torch

from .row_blocks import block_rows, summed_over_blocks

TILE_ELEMENTS = 1 << 20  # a block holds a few float64 copies of itself


def _signed(raw, inverted: bool):
    u = raw.to(torch.float64)
    return -u if inverted else u


def all_triplet_sums(emb, ref, block, inverted: bool, margin: float, masks, tile_rows: int | None = None):
    """(sum of relu(u_ap - u_an + margin) over all triplets, number of them with a positive loss, number of
    triplets): every positive p and negative n of each anchor, weighted by the pairs' multiplicities.
    block(query, ref) -> the distance (or similarity) block; masks(begin, n_block) -> the block's (positive,
    negative) multiplicities."""

    def block_sums(query, r, begin: int):
        u = _signed(block(query, r), inverted)
        pos, neg = (m.to(u.dtype) for m in masks(begin, u.shape[0]))
        sorted_u, order = torch.where(neg > 0, u, float("inf")).sort(dim=1)
        weight = neg.gather(1, order)
        zero = u.new_zeros(u.shape[0], 1)
        below_count = torch.cat([zero, weight.cumsum(1)], 1)  # [:, k]: weight of the k smallest negatives
        below_sum = torch.cat([zero, (weight * torch.where(weight > 0, sorted_u, 0)).cumsum(1)], 1)
        x = u + margin
        k = torch.searchsorted(sorted_u.detach(), x.detach().contiguous())  # negatives with u_an < x
        count = below_count.gather(1, k)
        per_positive = torch.where(pos > 0, pos * (count * x - below_sum.gather(1, k)), 0)
        return per_positive.sum(), (pos * count).sum().detach(), (pos * neg.sum(1, keepdim=True)).sum().detach()

    rows = block_rows(emb.shape[0], ref.shape[0], tile_rows, TILE_ELEMENTS)
    return summed_over_blocks(emb, ref, block_sums, rows)


def _violation_loss(violation, smooth: bool):
    return torch.nn.functional.softplus(violation) if smooth else torch.relu(violation)


def _swapped(u_an, emb, positives, r, block, inverted: bool):
    """PML's swap: the smaller of d_an and d_pn (the larger similarity, so the smaller u). As in PML, d_pn is
    mat[p, n], the distance of *embeddings* row p to the negative."""
    u_pn = _signed(block(emb[positives.reshape(-1)], r), inverted)
    return torch.minimum(u_an, u_pn.reshape(*positives.shape, -1))


def dense_triplet_sums(emb, ref, block, inverted: bool, margin: float, masks, tile_rows: int | None = None,
                       smooth: bool = False, swap: bool = False):
    """all_triplet_sums for the options without a count-and-sum form: softplus (PML's smooth_loss) in place of
    relu, or swap (u_an replaced by min(u_an, u_pn)). Each block holds (rows x positives x negatives) losses, its
    rows sized from the largest number of positives a row has; each anchor's positives are gathered (padded with
    weight 0)."""
    n_rows, n_refs = emb.shape[0], ref.shape[0]
    scan = block_rows(n_rows, n_refs, None, TILE_ELEMENTS)
    most = max(int(masks(b, min(scan, n_rows - b))[0].gt(0).sum(1).max()) for b in range(0, n_rows, scan))

    def block_sums(query, r, begin: int):
        u = _signed(block(query, r), inverted)
        pos, neg = (m.to(u.dtype) for m in masks(begin, u.shape[0]))
        pos_weight, pos_idx = pos.topk(most, dim=1)
        u_an = u[:, None, :]
        if swap:
            u_an = _swapped(u_an, emb, pos_idx, r, block, inverted)
        loss = _violation_loss(u.gather(1, pos_idx)[:, :, None] + margin - u_an, smooth)
        weight = pos_weight[:, :, None] * neg[:, None, :]
        return (loss * weight).sum(), (weight * (loss > 0)).sum().detach(), weight.sum().detach()

    if most == 0:
        zero = (emb.sum() + ref.sum()) * 0
        return zero, zero.detach(), zero.detach()
    rows = block_rows(n_rows, n_refs * most * (2 if swap else 1), tile_rows, TILE_ELEMENTS)
    return summed_over_blocks(emb, ref, block_sums, rows)


def listed_triplet_sums(emb, ref, block, inverted: bool, margin: float, anchors, positives, negatives,
                        tile_rows: int | None = None, smooth: bool = False, swap: bool = False):
    """The same sums over a miner's triplets (a, p, n), each counted as often as listed (softplus with smooth;
    with swap, d_pn is computed for a chunk of triplets at a time)."""
    order = torch.argsort(anchors, stable=True)
    anchors, positives, negatives = anchors[order], positives[order], negatives[order]
    chunk = max(1, TILE_ELEMENTS // max(ref.shape[0], 1))

    def block_sums(query, r, begin: int):
        u = _signed(block(query, r), inverted)
        lo, hi = torch.searchsorted(anchors, torch.tensor([begin, begin + u.shape[0]], device=anchors.device))
        a, pos, neg = anchors[lo:hi] - begin, positives[lo:hi], negatives[lo:hi]
        u_an = u[a, neg]
        if swap:
            u_an = torch.cat([_swapped(u_an[c:c + chunk, None], emb, pos[c:c + chunk], r, block, inverted)
                              .gather(1, neg[c:c + chunk, None]).squeeze(1) for c in range(0, a.numel(), chunk)]
                             or [u_an])
        loss = _violation_loss(u[a, pos] - u_an + margin, smooth)
        return loss.sum(), (loss > 0).sum().to(u.dtype), u.new_tensor(float(hi - lo))

    rows = block_rows(emb.shape[0], ref.shape[0], tile_rows, TILE_ELEMENTS)
    return summed_over_blocks(emb, ref, block_sums, rows)
