"""NT-Xent (InfoNCE) in blocks of query rows (slade_ext.row_blocks): the computation behind
slade_ext.losses.NTXentLoss. PML's NTXentLoss builds a (positive pairs x negative pairs) mask to find each positive
pair's negatives: a SimCLR batch of 1,200 asks for about 120 GB there (PML issue #547).

For a positive pair (i, j), with s = similarity / temperature (minus the distance for a distance) and LSE_i the
log-sum-exp of s over anchor i's negatives, PML's per-pair loss is

    -log(exp(s_ij) / (exp(s_ij) + exp(LSE_i)) + tiny) = -log(exp(-softplus(LSE_i - s_ij)) + tiny)

with tiny = finfo(dtype).tiny (PML's floor, which caps the loss); the loss is the mean over positive pairs
(PML's MeanReducer), or their sum, or their mean over the non-zero ones; any other reducer gets every positive
pair's loss (`nt_xent_pair_losses`). A listed pair counts as often as it is listed, negatives included (PML's
pair-based reading).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .row_blocks import block_rows, compute_dtype, concatenated_over_blocks, summed_over_blocks


def _pair_losses(raw, temperature: float, inverted: bool, pos, neg):
    """The block's matrix of per-pair losses (module docstring), valid where pos > 0."""
    tiny = torch.finfo(raw.dtype).tiny
    s = (1.0 if inverted else -1.0) * raw.to(compute_dtype(raw)) / temperature
    # A row without negatives gets a finite floor, not -inf: its terms are then exactly 0 with zero gradient.
    floor = torch.finfo(s.dtype).min
    # listed negatives count as often as listed: log of the multiplicity (a label mask counts once)
    weighted = s if neg.dtype == torch.bool else s + neg.to(s.dtype).clamp(min=1).log()
    lse = torch.where(neg > 0, weighted, floor).logsumexp(1, keepdim=True)
    return -torch.log(torch.exp(-F.softplus(lse - s)) + tiny)


def nt_xent_sums(emb, ref, block, inverted: bool, temperature: float, masks, tile_rows: int | None = None):
    """(sum of NT-Xent's per-pair losses over every positive pair, how many of those losses are non-zero), module
    docstring. block(query, ref) -> the similarity (inverted) or distance block; masks(begin, n_block) -> the
    block's (positive, negative) multiplicities."""

    def block_loss(query, r, begin: int):
        pos, neg = masks(begin, query.shape[0])
        per_pair = _pair_losses(block(query, r), temperature, inverted, pos, neg)
        weight = pos.to(per_pair.dtype)
        return (torch.where(pos > 0, per_pair * weight, 0).sum(),
                torch.where(per_pair > 0, weight, 0).sum().detach())

    return summed_over_blocks(emb, ref, block_loss, block_rows(emb.shape[0], ref.shape[0], tile_rows))


def nt_xent_pair_losses(emb, ref, block, inverted: bool, temperature: float, masks, tile_rows: int | None = None):
    """(losses, (anchors, refs)): every positive pair's loss, row by row, each listed pair as often as listed;
    what PML hands its reducer (its order for label pairs; listed pairs come sorted by row, then column)."""
    rows = block_rows(emb.shape[0], ref.shape[0], tile_rows)

    def repeats(pos):
        return pos[pos > 0].long() if pos.dtype != torch.bool else None

    def block_losses(query, r, begin: int):
        pos, neg = masks(begin, query.shape[0])
        picked = _pair_losses(block(query, r), temperature, inverted, pos, neg)[pos > 0]
        times = repeats(pos)
        return picked if times is None else picked.repeat_interleave(times)

    anchors, refs = [], []
    for begin in range(0, emb.shape[0], rows):
        pos, _ = masks(begin, min(rows, emb.shape[0] - begin))
        a, p = (pos > 0).nonzero(as_tuple=True)
        times = repeats(pos)
        anchors.append(a + begin if times is None else (a + begin).repeat_interleave(times))
        refs.append(p if times is None else p.repeat_interleave(times))
    return concatenated_over_blocks(emb, ref, block_losses, rows), (torch.cat(anchors), torch.cat(refs))
