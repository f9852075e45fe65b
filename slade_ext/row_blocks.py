"""Losses computed a block of query rows at a time under activation checkpointing (NTXentLoss, TripletMarginLoss).

Their cost is the similarity GEMM, which torch already does well; what PML gets wrong is memory (the N x M matrix,
then masks of pairs x pairs or N x M x M). Here forward keeps a few numbers per block and backward recomputes each
block, so neither pass holds more than one (rows x M) block. A PML distance object computes each block itself, so
every option of it holds.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

TILE_ELEMENTS = 1 << 20  # similarities per block: 4 MiB in float32, about 20 such temporaries at the peak


def block_rows(n_rows: int, n_refs: int, tile_rows: int | None = None, tile_elements: int = TILE_ELEMENTS) -> int:
    """Rows per block: `tile_rows`, or as many as keep a block within `tile_elements`."""
    rows = tile_rows if tile_rows is not None else tile_elements // max(n_refs, 1)
    return max(1, min(n_rows, rows))


def _each_block(emb, ref, block_fn, rows: int):
    """block_fn(query_rows, ref, begin) of each block of rows, recomputed in backward instead of kept. A single
    block is kept: recomputing it would not lower the peak."""
    grad = torch.is_grad_enabled() and (emb.requires_grad or ref.requires_grad) and rows < emb.shape[0]
    for begin in range(0, emb.shape[0], rows):
        query = emb[begin:begin + rows]
        if grad:
            yield checkpoint(block_fn, query, ref, begin, use_reentrant=False, preserve_rng_state=False)
        else:
            yield block_fn(query, ref, begin)


def summed_over_blocks(emb, ref, block_fn, rows: int):
    """The sum over blocks of block_fn(query_rows, ref, begin), a tuple of 0-dim tensors."""
    totals = None
    for parts in _each_block(emb, ref, block_fn, rows):
        totals = parts if totals is None else tuple(t + p for t, p in zip(totals, parts))
    return totals


def concatenated_over_blocks(emb, ref, block_fn, rows: int):
    """block_fn(query_rows, ref, begin), a 1-D tensor per block, concatenated in row order."""
    return torch.cat(list(_each_block(emb, ref, block_fn, rows)))


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype is summed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def label_masks(labels, ref_labels, own_columns=None):
    """masks(begin, n_block) -> (positive, negative) pair masks of that block from the labels. own_columns[i], when
    given, is the reference column that is row i itself, which is then no pair: arange(N) when ref_labels *is*
    labels (PML's rule), a memory bank's slots of the batch (CrossBatchMemory)."""

    def masks(begin: int, n_block: int):
        same = labels[begin:begin + n_block, None] == ref_labels[None, :]
        pos = same.clone()
        if own_columns is not None:
            rows = torch.arange(n_block, device=labels.device)
            pos[rows, own_columns[begin:begin + n_block]] = False
        return pos, ~same

    return masks


def _multiplicities(n_block: int, n_refs: int, ptr, cols, begin: int):
    """How often each (row, ref) pair of rows [begin, begin + n_block) is listed in the CSR list (ptr, cols)."""
    lo, hi = int(ptr[begin]), int(ptr[begin + n_block])
    device = cols.device
    rows = torch.repeat_interleave(torch.arange(n_block, device=device),
                                   ptr[begin + 1:begin + n_block + 1] - ptr[begin:begin + n_block])
    counts = torch.zeros(n_block, n_refs, device=device)
    counts.index_put_((rows, cols[lo:hi]), torch.ones(hi - lo, device=device), accumulate=True)
    return counts


def listed_masks(pos_ptr, pos_cols, neg_ptr, neg_cols, n_refs: int):
    """masks(begin, n_block) -> (positive, negative) multiplicities of a miner's pairs, as
    loss_ops.pair_lists(..., as_mask=False) lists them."""

    def masks(begin: int, n_block: int):
        return (_multiplicities(n_block, n_refs, pos_ptr, pos_cols, begin),
                _multiplicities(n_block, n_refs, neg_ptr, neg_cols, begin))

    return masks


def default_blocks(emb, ref, kind: str):
    """(emb, ref, block(query, ref)) for a loss's default distance without PML: "cosine" (PML's CosineSimilarity)
    or "l2" (PML's LpDistance(): torch.cdist of the normalised rows). The rows are normalised once."""
    emb_n = F.normalize(emb, dim=1)
    ref_n = emb_n if ref is emb else F.normalize(ref, dim=1)
    if kind == "cosine":
        return emb_n, ref_n, lambda query, r: query @ r.T
    # cdist has no half kernels on every device: half rows are compared in float32
    return emb_n, ref_n, lambda query, r: torch.cdist(query.to(compute_dtype(query)), r.to(compute_dtype(r)))


def distance_blocks(distance):
    """block(query, ref) of a PML distance object: its own matrix (its normalisation, p, power)."""
    return lambda query, ref: distance(query, ref)
