"""NT-Xent (InfoNCE) in tiles of query rows: the computation behind slade_ext.losses.NTXentLoss.

PML's NTXentLoss builds the N x M distance matrix and then a (positive pairs x negative pairs) mask to find each
positive pair's negatives: a SimCLR batch of 1,200 asks for about 120 GB there (PML issue #547). Here the matrix is
computed a block of rows at a time under activation checkpointing: the forward keeps one number per block, and the
backward recomputes each block, so neither pass holds more than one (rows x M) block.

For a positive pair (i, j), with s = similarity / temperature (minus the distance for a distance) and LSE_i the
log-sum-exp of s over anchor i's negatives, PML's per-pair loss is

    -log(exp(s_ij) / (exp(s_ij) + exp(LSE_i)) + tiny) = -log(exp(-softplus(LSE_i - s_ij)) + tiny)

with tiny = finfo(dtype).tiny (PML's floor, which caps the loss); the loss is the mean over positive pairs
(PML's MeanReducer). A listed pair counts as often as it is listed, negatives included (PML's pair-based reading).
The similarities are GEMMs, and torch's are as fast as any: this is tiling and bookkeeping, not a new kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

TILE_ELEMENTS = 1 << 22  # similarities per block: 16 MiB in float32


def block_rows(n_rows: int, n_refs: int, tile_rows: int | None = None) -> int:
    """Rows per block: `tile_rows`, or as many as keep a block within TILE_ELEMENTS."""
    rows = tile_rows if tile_rows is not None else TILE_ELEMENTS // max(n_refs, 1)
    return max(1, min(n_rows, rows))


def _pair_weights(n_block: int, n_refs: int, ptr, cols, begin: int, device):
    """How often each (row, ref) pair of rows [begin, begin + n_block) is listed in the CSR list (ptr, cols)."""
    lo, hi = int(ptr[begin]), int(ptr[begin + n_block])
    rows = torch.repeat_interleave(torch.arange(n_block, device=device), ptr[begin + 1:begin + n_block + 1]
                                   - ptr[begin:begin + n_block])
    weights = torch.zeros(n_block, n_refs, device=device)
    weights.index_put_((rows, cols[lo:hi]), torch.ones(hi - lo, device=device), accumulate=True)
    return weights


def _block_loss(query, ref, begin: int, logits, temperature: float, pairs):
    """The summed per-pair losses of the positive pairs whose anchor is a row of `query` (rows begin.. of the
    batch). `pairs(begin, n_block, n_refs)` gives the block's (positive, negative) multiplicities."""
    raw = logits(query, ref)
    tiny = torch.finfo(raw.dtype).tiny
    s = raw.to(torch.float64 if raw.dtype == torch.float64 else torch.float32) / temperature
    pos, neg = pairs(begin, s.shape[0], s.shape[1])
    # A row without negatives gets a finite floor, not -inf: its terms are then exactly 0 with zero gradient.
    floor = torch.finfo(s.dtype).min
    lse = torch.where(neg > 0, s + neg.to(s.dtype).clamp(min=1).log(), floor).logsumexp(1, keepdim=True)
    per_pair = -torch.log(torch.exp(-F.softplus(lse - s)) + tiny)
    return torch.where(pos > 0, per_pair * pos.to(s.dtype), 0).sum()


def nt_xent_sum(emb, ref, logits, temperature: float, pairs, tile_rows: int | None = None):
    """Sum of NT-Xent's per-pair losses over every positive pair, block by block (module docstring).

    logits(query_rows, ref) -> the similarity block, already signed (minus a distance); pairs(begin, n_block,
    n_refs) -> (positive, negative) multiplicities of that block, without gradient."""
    rows = block_rows(emb.shape[0], ref.shape[0], tile_rows)
    grad = torch.is_grad_enabled() and (emb.requires_grad or ref.requires_grad)
    total = emb.new_zeros((), dtype=torch.float64 if emb.dtype == torch.float64 else torch.float32)
    for begin in range(0, emb.shape[0], rows):
        query = emb[begin:begin + rows]
        if grad:  # recompute the block in backward instead of keeping it
            part = checkpoint(_block_loss, query, ref, begin, logits, temperature, pairs, use_reentrant=False,
                              preserve_rng_state=False)
        else:
            part = _block_loss(query, ref, begin, logits, temperature, pairs)
        total = total + part
    return total


def label_pairs(labels, ref_labels, drop_self: bool):
    """`pairs` for all pairs from the labels: positives share a label, negatives do not; with drop_self (PML:
    ref_labels *is* labels) the (i, i) pairs are not positives."""

    def pairs(begin: int, n_block: int, n_refs: int):
        block = labels[begin:begin + n_block]
        same = block[:, None] == ref_labels[None, :]
        pos = same.clone()
        if drop_self:  # ref_labels is labels, so row i of the batch is column i
            rows = torch.arange(n_block, device=labels.device)
            pos[rows, rows + begin] = False
        return pos, ~same

    return pairs


def listed_pairs(pos_ptr, pos_cols, neg_ptr, neg_cols):
    """`pairs` for a miner's pairs, as loss_ops.pair_lists(..., as_mask=False) lists them."""

    def pairs(begin: int, n_block: int, n_refs: int):
        device = pos_cols.device
        return (_pair_weights(n_block, n_refs, pos_ptr, pos_cols, begin, device),
                _pair_weights(n_block, n_refs, neg_ptr, neg_cols, begin, device))

    return pairs


def cosine_logits(emb, ref):
    """The default distance (PML's CosineSimilarity): the rows are normalised once, each block is one GEMM."""
    emb_n = F.normalize(emb, dim=1)
    ref_n = emb_n if ref is emb else F.normalize(ref, dim=1)
    return emb_n, ref_n, lambda query, r: query @ r.T


def distance_logits(distance):
    """A PML distance object computes each block itself (its normalisation, p, power); distances are negated."""
    sign = 1.0 if distance.is_inverted else -1.0
    return lambda query, ref: sign * distance(query, ref)
