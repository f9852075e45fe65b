"""PML's NTXentLoss and TripletMarginLoss computed in blocks of query rows (slade_ext.row_blocks), re-exported by
slade_ext.losses. Memory grows with N, not with N x M or the pairs x pairs / N x M x M masks PML builds.

forward(embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None) as PML, with its pair rules: all
pairs (or triplets) from the labels, (i, i) no positive when ref_labels *is* labels; or a miner's tuple, every listed
pair or triplet counted as often as listed. distance: None (the loss's PML default, computed without PML) or any PML
distance object, which computes each block itself. tile_rows: rows per block (None: from a memory budget). reducer:
PML's MeanReducer, SumReducer or AvgNonZeroReducer (a sum and a count per block give them); NTXentLoss also hands
any other PML reducer its positive pairs' losses. Other PML options (another reducer for the triplet loss, a
regulariser), a distance with collect_stats, and the options a block cannot express fall back to PML's own
class with one FallbackWarning per instance.
"""
from __future__ import annotations

import torch

from . import loss_ops, ntxent, row_blocks, triplet
from .cross_batch_memory import memory_slots
from ._compat import DropInLoss, check_forward_inputs, pml_twin, sum_reduction
from .ops import check_number
from .pair_rules import all_pair_counts, as_pairs, as_tensors

__all__ = ["NTXentLoss", "TripletMarginLoss"]

_TUPLE_NAMES = ("indices_tuple[0]", "indices_tuple[1]", "indices_tuple[-2]", "indices_tuple[-1]")


class _BlockLoss(DropInLoss):
    """Shared plumbing: settings checks, the PML fallback, the pair rules and the distance's blocks."""

    default_distance = "cosine"  # row_blocks.default_blocks kind
    pml_default_reducer = "mean"  # _compat.sum_reduction's name of PML's default reducer for the loss
    any_reducer = False  # whether every loss can be handed to any PML reducer (reduction "pml")

    def __init__(self, distance, tile_rows, reducer, pml_args: dict, unsupported: list, pml_options: dict):
        super().__init__()
        if distance is not None and not (callable(distance) and hasattr(distance, "is_inverted")):
            raise TypeError(f"distance must be None or a pytorch-metric-learning distance, got {distance!r}")
        if tile_rows is not None and (isinstance(tile_rows, bool) or not isinstance(tile_rows, int)
                                      or tile_rows < 1):
            raise ValueError(f"tile_rows must be a positive int or None, got {tile_rows!r}")
        self.distance, self.tile_rows, self.fallback = distance, tile_rows, None
        reasons = list(unsupported)
        if pml_options:
            reasons.append(f"option(s) {', '.join(sorted(pml_options))} have no block path")
        self.reduction = sum_reduction(reducer, self.pml_default_reducer) or ("pml" if self.any_reducer else None)
        pml_options = self._hold_reducer(reducer, pml_options)
        if self.reduction is None:
            reasons.append(f"reducer {type(reducer).__name__} needs every loss, where blocks keep a sum and counts "
                           "(MeanReducer, SumReducer and AvgNonZeroReducer run here)")
        if getattr(distance, "collect_stats", False):
            reasons.append("a distance with collect_stats=True records per-call stats, which blocks would split")
        if reasons:
            kwargs = dict(pml_args, **pml_options)
            if distance is not None:
                kwargs["distance"] = distance
            self.fallback = pml_twin("losses", type(self).__name__, kwargs, "; ".join(reasons))

    def _own_forward(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        drop_self = ref_emb is None or ref_labels is labels  # PML's get_all_pairs_indices rule
        labels, ref_labels = check_forward_inputs(
            embeddings, labels, ref_emb, ref_labels, labels_required=indices_tuple is None
        )
        ref = embeddings if ref_emb is None else ref_emb
        own_columns = None
        if indices_tuple is not None:
            indices_tuple = as_tensors(indices_tuple, embeddings.device)
        else:
            ref_labels = labels if ref_labels is None else ref_labels
            if drop_self:  # row i is column i
                own_columns = torch.arange(embeddings.shape[0], device=embeddings.device)
        return self._blocks_forward(embeddings, ref, labels, ref_labels, own_columns, indices_tuple)

    def forward_against_memory(self, embeddings, labels, memory, memory_labels, own_start: int):
        """The loss over every pair of (embeddings, labels) against a memory bank that holds row i of the batch at
        row (own_start + i) % len(memory), except each row's pair with its own slot: PML's CrossBatchMemory (all
        pairs, self comparisons removed) without its pair lists."""
        labels, memory_labels = check_forward_inputs(embeddings, labels, memory, memory_labels, True)
        own_slots = memory_slots(own_start, embeddings.shape[0], memory.shape[0], embeddings.device)
        return self._blocks_forward(embeddings, memory, labels, memory_labels, own_slots, None)

    def _blocks_forward(self, embeddings, ref, labels, ref_labels, own_columns, indices_tuple):
        if self.distance is None:
            emb, ref, block = row_blocks.default_blocks(embeddings, ref, self.default_distance)
            inverted = self.default_distance == "cosine"
        else:
            emb, block, inverted = embeddings, row_blocks.distance_blocks(self.distance), self.distance.is_inverted
        out = self._loss(emb, ref, block, inverted, labels, ref_labels, own_columns, indices_tuple)
        return out.to(embeddings.dtype) if torch.is_tensor(out) else out  # DoNothingReducer's dict as it is

    def _loss(self, emb, ref, block, inverted, labels, ref_labels, own_columns, indices_tuple):
        raise NotImplementedError

    def _reduced(self, total, n_losses, n_nonzero, emb):
        """PML's reducer from the losses' sum and counts: the sum, or the mean over all of them or over the
        non-zero ones; an attached 0 where that count is 0."""
        if self.reduction == "sum":
            return total
        count = torch.as_tensor(n_losses if self.reduction == "mean" else n_nonzero, device=total.device)
        return torch.where(count > 0, total / count.clamp(min=1).to(total.dtype), (emb * 0).sum())


def _pair_masks(emb, ref, labels, ref_labels, own_columns, indices_tuple):
    """(masks, n_pos, n_neg): the block masks of all pairs from the labels but each row's own column (None: no
    such column), or of a miner's pairs."""
    if indices_tuple is None:
        n_pos, n_neg = (int(c) for c in all_pair_counts(labels, ref_labels, False))
        if own_columns is not None:
            n_pos -= int((labels == ref_labels[own_columns]).sum())
        return row_blocks.label_masks(labels, ref_labels, own_columns), n_pos, n_neg
    a1, p, a2, n = as_pairs(indices_tuple, emb.device)
    lists = loss_ops.pair_lists(a1, p, a2, n, emb.shape[0], ref.shape[0], False, _TUPLE_NAMES)
    return row_blocks.listed_masks(*lists, ref.shape[0]), a1.numel(), a2.numel()


class NTXentLoss(_BlockLoss):
    """PML's NTXentLoss(temperature=0.07) (InfoNCE; SimCLR's loss when each label marks two views; slade_ext.ntxent):
    the mean over positive pairs; 0 without positive or negative pairs, or with at most one of each (PML's rules).
    A SimCLR batch of 8,192 fits where PML's asks for hundreds of GB."""

    any_reducer = True  # the positive pairs' losses are few enough to list (PML lists them too)

    def __init__(self, temperature=0.07, distance=None, tile_rows=None, reducer=None, **pml_options):
        self.temperature = check_number(temperature, "temperature", positive=True)
        super().__init__(distance, tile_rows, reducer, {"temperature": self.temperature}, [], pml_options)

    def _loss(self, emb, ref, block, inverted, labels, ref_labels, own_columns, indices_tuple):
        masks, n_pos, n_neg = _pair_masks(emb, ref, labels, ref_labels, own_columns, indices_tuple)
        enough = not (n_pos == 0 or n_neg == 0 or max(n_pos, n_neg) <= 1)  # else PML returns zero losses
        if self.reduction == "pml":  # PML's reducer gets every positive pair's loss, as from PML's loss
            if not enough:
                return self.reducer({"loss": {"losses": 0, "indices": None, "reduction_type": "already_reduced"}},
                                    emb, labels)
            losses, pairs = ntxent.nt_xent_pair_losses(emb, ref, block, inverted, self.temperature, masks,
                                                       self.tile_rows)
            return self.reducer({"loss": {"losses": losses.to(emb.dtype), "indices": pairs,
                                          "reduction_type": "pos_pair"}}, emb, labels)
        if not enough:
            return (emb * 0).sum()
        total, nonzero = ntxent.nt_xent_sums(emb, ref, block, inverted, self.temperature, masks, self.tile_rows)
        return self._reduced(total, n_pos, nonzero, emb)


class TripletMarginLoss(_BlockLoss):
    """PML's TripletMarginLoss(margin=0.05) with its AvgNonZeroReducer (slade_ext.triplet): the mean of
    relu(d_ap - d_an + margin) over the triplets where it is positive, 0 without any. All triplets of the labels
    never exist as a tensor (PML's N x M x M mask); a miner's pairs make PML's triplets (each positive pair with each
    negative pair of its anchor), its triplets are used as listed. smooth_loss=True (softplus instead of relu) and
    swap=True (d_an replaced by the smaller of d_an and d_pn) hold each anchor's (positives x negatives) losses per
    block instead. A number of triplets_per_anchor (random sampling) runs PML's class."""

    default_distance = "l2"
    pml_default_reducer = "avg_nonzero"

    def __init__(self, margin=0.05, swap=False, smooth_loss=False, triplets_per_anchor="all", distance=None,
                 tile_rows=None, reducer=None, **pml_options):
        self.margin = check_number(margin, "margin")
        args = {"margin": self.margin, "swap": swap, "smooth_loss": smooth_loss,
                "triplets_per_anchor": triplets_per_anchor}
        self.smooth_loss, self.swap = bool(smooth_loss), bool(swap)
        unsupported = ([] if triplets_per_anchor == "all" else
                       [f"triplets_per_anchor={triplets_per_anchor!r} (random sampling) has no block path"])
        super().__init__(distance, tile_rows, reducer, args, unsupported, pml_options)

    def _loss(self, emb, ref, block, inverted, labels, ref_labels, own_columns, indices_tuple):
        if indices_tuple is not None and len(indices_tuple) == 3:
            a, p, n = indices_tuple
            for t, size, name in zip((a, p, n), (emb.shape[0], ref.shape[0], ref.shape[0]),
                                     ("indices_tuple[0]", "indices_tuple[1]", "indices_tuple[2]")):
                loss_ops.check_index(t, size, name)
            if not (a.numel() == p.numel() == n.numel()):
                raise ValueError("indices_tuple's anchors, positives and negatives must have equal lengths")
            total, nonzero, n_triplets = triplet.listed_triplet_sums(
                emb, ref, block, inverted, self.margin, a.long(), p.long(), n.long(), self.tile_rows,
                self.smooth_loss, self.swap)
        else:
            masks, _, _ = _pair_masks(emb, ref, labels, ref_labels, own_columns, indices_tuple)
            if self.smooth_loss or self.swap:
                total, nonzero, n_triplets = triplet.dense_triplet_sums(
                    emb, ref, block, inverted, self.margin, masks, self.tile_rows, self.smooth_loss, self.swap)
            else:
                total, nonzero, n_triplets = triplet.all_triplet_sums(emb, ref, block, inverted, self.margin, masks,
                                                                      self.tile_rows)
        return self._reduced(total, n_triplets, nonzero, emb)
