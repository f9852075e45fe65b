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
  listing pairs (`forward_against_memory`: the loss's tiles, each row's own slot excluded). The batch's slots
  are (own_start + i) % len(memory): before the memory is full, its filled part ends with the batch, so the
  modulus never wraps there; after, it is memory_size;
- otherwise (a miner, an indices_tuple, or any other loss) the pairs are listed as PML does, and the self
  comparisons are dropped in O(pairs): pair (a, p) is one when p is a's own slot.
Two differences from PML, both where PML's own rule slips: a batch of one row loses its self comparison too (PML's
wrap-around test keeps it), and enqueueing no rows (an all-False enqueue_mask) does not mark the memory as filled.
"""
from __future__ import annotations

import torch

from ._compat import check_forward_inputs, runs_fused
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


def memory_slots(start: int, n: int, size: int, device) -> torch.Tensor:
    """The rows (start + i) % size, i < n, of a memory bank of `size` rows: where a batch of n was enqueued."""
    return (start + torch.arange(n, device=device)) % size


def rest_of_memory(start: int, n: int, size: int):
    """The other rows of the memory bank as at most two (begin, end) ranges."""
    end = start + n
    ranges = [(end - size, start)] if end > size else [(end, size), (0, start)]
    return [(b, e) for b, e in ranges if e > b]


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
        self.check_loss_support(type(loss).__name__)
        if miner is not None and not callable(miner):
            raise TypeError(f"miner must be callable or None, got {type(miner).__name__}")
        self.loss, self.miner = loss, miner
        self.embedding_size = _positive_int(embedding_size, "embedding_size")
        self.memory_size = _positive_int(memory_size, "memory_size")
        self.reset_queue()

    @staticmethod
    def supported_losses():
        return list(SUPPORTED_LOSSES)

    @classmethod
    def check_loss_support(cls, loss_name: str):
        if loss_name not in SUPPORTED_LOSSES:
            raise ValueError(f"loss: CrossBatchMemory does not support {loss_name} (supported: "
                             f"{', '.join(SUPPORTED_LOSSES)})")

    def reset_queue(self):
        """Empty the memory (PML's buffers, so that state_dicts load either way)."""
        self.register_buffer("embedding_memory", torch.zeros(self.memory_size, self.embedding_size))
        self.register_buffer("label_memory", torch.zeros(self.memory_size, dtype=torch.long))
        self.has_been_filled = False
        self.queue_idx = 0

    def fused(self) -> bool:
        """Whether forward without a miner or indices_tuple skips the pair lists (the loss is a fused slade_ext
        loss that did not fall back to PML)."""
        return runs_fused(self.loss) and hasattr(self.loss, "forward_against_memory")

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
        own_start = self.queue_idx
        self.add_to_memory(embeddings, labels, embeddings.shape[0])
        filled = self.memory_size if self.has_been_filled else self.queue_idx
        memory, memory_labels = self.embedding_memory[:filled], self.label_memory[:filled]
        if self.miner is None and indices_tuple is None and self.fused():
            if enqueue_mask is not None:  # queries and memory are disjoint: the labels path, nothing to drop
                return self.loss(queries, query_labels, None, memory, memory_labels)
            return self.loss.forward_against_memory(queries, query_labels, memory, memory_labels, own_start)
        mined = self.create_indices_tuple(queries, query_labels, memory, memory_labels, indices_tuple,
                                          enqueue_mask is None)
        return self.loss(queries, query_labels, mined, memory, memory_labels)

    def add_to_memory(self, embeddings, labels, batch_size):
        """Write the rows at the queue's head (wrapping around); their slots become `curr_batch_idx`."""
        self.curr_batch_idx = memory_slots(self.queue_idx, batch_size, self.memory_size, labels.device)
        self.embedding_memory[self.curr_batch_idx] = embeddings.detach()
        self.label_memory[self.curr_batch_idx] = labels.detach()
        previous, self.queue_idx = self.queue_idx, (self.queue_idx + batch_size) % self.memory_size
        if not self.has_been_filled and self.queue_idx <= previous and batch_size > 0:
            self.has_been_filled = True

    def create_indices_tuple(self, embeddings, labels, E_mem, L_mem, input_indices_tuple,
                             do_remove_self_comparisons):
        """The listed path (PML's method): the miner's tuple or all pairs against the memory, without the batch's
        comparisons with its own slots (curr_batch_idx), then `input_indices_tuple` converted to the same form
        and appended."""
        mined = (self.miner(embeddings, labels, E_mem, L_mem) if self.miner is not None
                 else all_pairs(labels, L_mem))
        mined = as_tensors(mined, embeddings.device)
        if do_remove_self_comparisons:
            mined = drop_own_slots(mined, self.curr_batch_idx)
        if input_indices_tuple is not None:
            given = as_tensors(input_indices_tuple, embeddings.device)
            given = as_triplets(given) if len(mined) == 3 else as_pairs(given, embeddings.device)
            mined = tuple(torch.cat([m, g.to(m.dtype)]) for m, g in zip(mined, given))
        return mined
