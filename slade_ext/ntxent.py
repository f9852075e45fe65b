"""NT-Xent (InfoNCE) in blocks of query rows (slade_ext.row_blocks): the computation behind
slade_ext.losses.NTXentLoss. PML's NTXentLoss builds a (positive pairs x negative pairs) mask to find each positive
pair's negatives: a SimCLR batch of 1,200 asks for about 120 GB there (PML issue #547).

For a positive pair (i, j), with s = similarity / temperature (minus the distance for a distance) and LSE_i the
log-sum-exp of s over anchor i's negatives, PML's per-pair loss is

    -log(exp(s_ij) / (exp(s_ij) + exp(LSE_i)) + tiny) = -log(exp(-softplus(LSE_i - s_ij)) + tiny)

with tiny = finfo(dtype).tiny (PML's floor, which caps the loss); the loss is the mean over positive pairs
(PML's MeanReducer), or their sum, or their mean over the non-zero ones. A listed pair counts as often as it is listed, negatives included (PML's pair-based reading).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .row_blocks import block_rows, compute_dtype, summed_over_blocks


def nt_xent_sums(emb, ref, block, inverted: bool, temperature: float, masks, tile_rows: int | None = None):
    """(sum of NT-Xent's per-pair losses over every positive pair, how many of those losses are non-zero), module
    docstring. block(query, ref) -> the similarity (inverted) or distance block; masks(begin, n_block) -> the
    block's (positive, negative) multiplicities."""
    sign = 1.0 if inverted else -1.0

    def block_loss(query, r, begin: int):
        raw = block(query, r)
        tiny = torch.finfo(raw.dtype).tiny
        s = sign * raw.to(compute_dtype(raw)) / temperature
        pos, neg = masks(begin, s.shape[0])
        # A row without negatives gets a finite floor, not -inf: its terms are then exactly 0 with zero gradient.
        floor = torch.finfo(s.dtype).min
        # listed negatives count as often as listed: log of the multiplicity (a label mask counts once)
        weighted = s if neg.dtype == torch.bool else s + neg.to(s.dtype).clamp(min=1).log()
        lse = torch.where(neg > 0, weighted, floor).logsumexp(1, keepdim=True)
        per_pair = -torch.log(torch.exp(-F.softplus(lse - s)) + tiny)
        weight = pos.to(s.dtype)
        return (torch.where(pos > 0, per_pair * weight, 0).sum(),
                torch.where(per_pair > 0, weight, 0).sum().detach())

    return summed_over_blocks(emb, ref, block_loss, block_rows(emb.shape[0], ref.shape[0], tile_rows))
