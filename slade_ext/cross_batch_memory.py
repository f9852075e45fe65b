"""PML's CrossBatchMemory (XBM) as a drop-in, re-exported by slade_ext.losses: a queue of the last `memory_size`
embeddings is the reference set (ref_emb) of the wrapped loss, so each batch is compared with many past ones.

    from slade_ext import losses
    xbm = losses.CrossBatchMemory(losses.MultiSimilarityLoss(), embedding_size=128, memory_size=8192)
    loss = xbm(embeddings, labels)

forward(embeddings, labels, indices_tuple=None, enqueue_mask=None) follows PML's: the batch (or its enqueue_mask
rows) is enqueued, then the loss compares the batch (or the other rows) with the filled part of the memory. The
batch's comparisons with its own slots are dropped (not with enqueue_mask, where queries and memory are disjoint).

PML lists every (batch x memory) pair, then drops the self comparisons through a (pairs x batch) comparison. Here:
- with one of slade_ext's fused losses, no miner and no indices_tuple, the loss runs over the memory without
  listing pairs (`forward_against_memory`: the loss's tiles, each row's own slot excluded);
- otherwise (a miner, an indices_tuple, or any other loss) the pairs are listed as PML does, and the self
  comparisons are dropped in O(pairs): pair (a, p) is one when p is a's own slot.
Two differences from PML, both where PML's own rule slips: a batch of one row loses its self comparison too (PML's
wrap-around test keeps it), and enqueueing no rows (an all-False enqueue_mask) does not mark the memory as filled.
"""
from __future__ import annotations

import torch

from ._compat import check_forward_inputs
from .pair_rules import all_pairs, as_pairs, as_tensors, as_triplets

__all__ = ["CrossBatchMemory"]

# The losses PML's CrossBatchMemory accepts: pair-based ones that take a reference set.
SUPPORTED_LOSSES = (
    "AngularLoss", "CircleLoss", "ContrastiveLoss", "GeneralizedLiftedStructureLoss", "IntraPairVarianceLoss",
    "LiftedStructureLoss", "MarginLoss", "MultiSimilarityLoss", "NCALoss", "NTXentLoss",
    "SignalToNoiseRatioContrastiveLoss", "SupConLoss", "TripletMarginLoss", "TupletMarginLoss",
)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def drop_own_slots(indices_tuple, own_slots):
    """A tuple against the memory without the pairs (a, own_slots[a]): a row compared with itself. Triplets lose
    the triplet, pair tuples their positive pair (a slot holds its row's label, so it is never a negative)."""
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        keep = p != own_slots[a]
        return a[keep], p[keep], n[keep]
    a1, p, a2, n = indices_tuple
    keep = p != own_slots[a1]
    return a1[keep], p[keep], a2, n


class CrossBatchMemory(torch.nn.Module):
    def __init__(self, loss, embedding_size, memory_size=1024, miner=None):
        super().__init__()
        if type(loss).__name__ not in SUPPORTED_LOSSES:
            raise ValueError(f"loss: CrossBatchMemory does not support {type(loss).__name__} (supported: "
                             f"{', '.join(SUPPORTED_LOSSES)})")
        if miner is not None and not callable(miner):
            raise TypeError(f"miner must be callable or None, got {type(miner).__name__}")
        self.loss, self.miner = loss, miner
        self.embedding_size = _positive_int(embedding_size, "embedding_size")
        self.memory_size = _positive_int(memory_size, "memory_size")
        self.reset_queue()

    def reset_queue(self):
        """Empty the memory (PML's buffers, so that state_dicts load either way)."""
        self.register_buffer("embedding_memory", torch.zeros(self.memory_size, self.embedding_size))
        self.register_buffer("label_memory", torch.zeros(self.memory_size, dtype=torch.long))
        self.has_been_filled = False
        self.queue_idx = 0

    def fused(self) -> bool:
        """Whether forward without a miner or indices_tuple skips the pair lists (the loss is a fused slade_ext
        loss that did not fall back to PML)."""
        fused = getattr(self.loss, "fused", None)
        return callable(fused) and fused() and hasattr(self.loss, "forward_against_memory")

    def forward(self, embeddings, labels, indices_tuple=None, enqueue_mask=None):
        labels, _ = check_forward_inputs(embeddings, labels, None, None, labels_required=True)
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(f"embeddings have {embeddings.shape[1]} features but embedding_size is "
                             f"{self.embedding_size}")
        if indices_tuple is not None and enqueue_mask is not None:
            raise ValueError("indices_tuple and enqueue_mask are mutually exclusive")
        queries, query_labels = embeddings, labels
        if enqueue_mask is not None:
            if (not isinstance(enqueue_mask, torch.Tensor) or enqueue_mask.dtype != torch.bool
                    or enqueue_mask.shape != labels.shape):
                raise ValueError(f"enqueue_mask must be a bool tensor of shape ({labels.shape[0]},)")
            enqueue_mask = enqueue_mask.to(embeddings.device)
            queries, query_labels = embeddings[~enqueue_mask], labels[~enqueue_mask]
            embeddings, labels = embeddings[enqueue_mask], labels[enqueue_mask]
        if embeddings.shape[0] > self.memory_size:
            raise ValueError(f"the batch enqueues {embeddings.shape[0]} rows but memory_size is {self.memory_size}")
        self.embedding_memory = self.embedding_memory.to(embeddings.device, embeddings.dtype)
        self.label_memory = self.label_memory.to(labels.device, labels.dtype)
        own_slots = self._enqueue(embeddings, labels)
        filled = self.memory_size if self.has_been_filled else self.queue_idx
        memory, memory_labels = self.embedding_memory[:filled], self.label_memory[:filled]
        if self.miner is not None:
            mined = self.miner(queries, query_labels, memory, memory_labels)
        elif indices_tuple is None and self.fused():
            if enqueue_mask is not None:  # queries and memory are disjoint: the labels path, nothing to drop
                return self.loss(queries, query_labels, None, memory, memory_labels)
            return self.loss.forward_against_memory(queries, query_labels, memory, memory_labels, own_slots)
        else:
            mined = all_pairs(query_labels, memory_labels)
        mined = as_tensors(mined, queries.device)
        if enqueue_mask is None:
            mined = drop_own_slots(mined, own_slots)
        if indices_tuple is not None:
            given = as_tensors(indices_tuple, queries.device)
            given = as_triplets(given) if len(mined) == 3 else as_pairs(given, queries.device)
            mined = tuple(torch.cat([m, g.to(m.dtype)]) for m, g in zip(mined, given))
        return self.loss(queries, query_labels, mined, memory, memory_labels)

    def _enqueue(self, embeddings, labels):
        """Write the rows at the queue's head (wrapping around); returns their slots."""
        slots = torch.arange(self.queue_idx, self.queue_idx + embeddings.shape[0],
                             device=labels.device) % self.memory_size
        self.embedding_memory[slots] = embeddings.detach()
        self.label_memory[slots] = labels.detach()
        previous, self.queue_idx = self.queue_idx, (self.queue_idx + embeddings.shape[0]) % self.memory_size
        if not self.has_been_filled and self.queue_idx <= previous and embeddings.shape[0] > 0:
            self.has_been_filled = True
        return slots
