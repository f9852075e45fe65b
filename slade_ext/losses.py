"""Drop-in replacements for pytorch-metric-learning's MultiSimilarityLoss and ContrastiveLoss on fused kernels, and
its NTXentLoss and TripletMarginLoss in blocks of rows (slade_ext.block_losses).

    from slade_ext import losses          # instead of: from pytorch_metric_learning import losses
    loss = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(embeddings, labels, indices_tuple)

forward(embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None) as PML: all pairs from the
labels, or the pairs of a miner's (a1, p, a2, n) / (a, p, n). PML's default reductions:
- MultiSimilarityLoss: mean over the anchors (every row of embeddings) of pos_lse / alpha + neg_lse / beta; listed
  pairs count once (PML's mask) and a pair may not be both positive and negative. Default distance: cosine.
- ContrastiveLoss: per side, the mean of the non-zero pair losses (AvgNonZeroReducer; 0 when there are none),
  positive + negative; listed pairs count as often as listed. Default distance: L2 of normalised embeddings.
Both give 0 (still attached to the graph) when no side has more than one pair, as PML does. The N x M similarity
matrix is never stored: forward and backward walk it in tiles (slade_ext.loss_ops).
Self pairs follow PML's get_all_pairs_indices: (i, i) is no pair when ref_labels *is* labels, whatever ref_emb is.
For the detached-reference call loss(E, L, ref_emb=E.detach(), ref_labels=L) the ops cannot drop (i, i) against a
separate ref_emb, so the pairs are passed as lists (O(N^2) int64 indices, eager only; docs/architecture.md).
On the labels path the "too few pairs" rule is a tensor condition, so torch.compile(fullgraph=True) traces it.
reducer: MultiSimilarityLoss hands any PML reducer its per-anchor losses ([N, 1], reduction type "element", as PML's;
calling that reducer is eager); ContrastiveLoss takes MeanReducer, SumReducer and AvgNonZeroReducer per side (the
rows' sums and counts give them). Other PML options (another reducer, regularizers, other distances) fall back to
PML's own loss with one FallbackWarning per instance. CrossBatchMemory (slade_ext.cross_batch_memory) runs these
losses over a memory bank through `forward_against_memory`.
"""
from __future__ import annotations

import torch

from . import loss_ops
from ._compat import DropInLoss, check_forward_inputs, fused_or_fallback, sum_reduction
from .block_losses import NTXentLoss, TripletMarginLoss
from .cross_batch_memory import CrossBatchMemory, memory_slots, rest_of_memory
from .ops import check_number
from .pair_rules import all_pair_counts, as_pairs

__all__ = ["MultiSimilarityLoss", "ContrastiveLoss", "NTXentLoss", "TripletMarginLoss", "CrossBatchMemory"]


def _all_pair_lists_without_self_pairs(labels, ref_labels):
    """Every pair of labels against ref_labels (one entry per row) but (i, i), as the loss ops' CSR lists: PML's
    get_all_pairs_indices(labels, ref_labels) when ref_labels *is* labels but ref_emb is separate (the
    detached-reference call), or a batch against its own slots of a memory bank. The ops' labels mode cannot drop
    (i, i) against a separate ref_emb, so the pairs are listed (O(N^2) int64 indices, eager only)."""
    same = labels[:, None] == ref_labels[None, :]
    diff = ~same
    same.fill_diagonal_(False)
    lists = []
    for mask in (same, diff):
        ptr = torch.zeros(labels.shape[0] + 1, dtype=torch.int64, device=labels.device)
        ptr[1:] = mask.sum(1).cumsum(0)
        lists += [ptr, mask.nonzero()[:, 1]]
    return tuple(lists), (lists[1].numel(), lists[3].numel())


class _FusedPairLoss(DropInLoss):
    """Shared plumbing: distance mapping, the PML fallback, input checks, pair lists and the 'too few pairs' rule."""

    default_distance = "cosine"
    as_mask = True  # how listed pairs are read (loss_ops.pair_lists)

    def __init__(self, distance=None, reducer=None, **pml_options):
        super().__init__()
        self.distance = distance
        self.reduction = self._fused_reduction(reducer)
        pml_options = self._hold_reducer(reducer, pml_options)
        self.fused_distance, self.fallback = fused_or_fallback(
            "losses", self, distance, pml_options, fused_options=("reducer",) if self.reduction else ())

    def _fused_reduction(self, reducer) -> str | None:
        """How the fused path reduces with `reducer` (None: the loss's PML default), or None: PML's class must."""
        raise NotImplementedError

    def default_reduction(self) -> bool:
        """Whether the loss reduces as PML's default reducer does (what DistributedLossWrapper's ranks add up)."""
        return self.reduction == self._fused_reduction(None)

    def _pml_args(self) -> dict:
        raise NotImplementedError

    def _rows(self, embeddings, labels, ref_emb, ref_labels, lists, query_rows=None):
        raise NotImplementedError

    def _parts(self, rows):
        """(numerators, denominators), 1-D float64: the loss is the sum of numerator / denominator over the entries
        whose denominator is positive. Sums over rows, so that a rank's share of the rows adds up (distributed)."""
        raise NotImplementedError

    def _reduce(self, rows, embeddings, labels, counts):
        """The loss from the rows' state with PML's default reducer; counts = (positive pairs, negative pairs)."""
        num, den = self._parts(rows)
        return combine_parts(num, den).to(embeddings.dtype)

    def _zero(self, embeddings, labels):
        return (embeddings * 0).sum()

    def _finish(self, rows, embeddings, labels, n_pos, n_neg):
        """The reduced loss, or PML's zero loss when no side has more than one pair (PML: `if all(len(x) <= 1 for
        x in indices_tuple)`), as a tensor condition (torch.compile(fullgraph=True) traces it) unless a PML
        reducer object must be called."""
        enough = torch.as_tensor((n_pos > 1) | (n_neg > 1))
        if self.reduction == "pml":
            return self._reduce(rows, embeddings, labels, (n_pos, n_neg)) if bool(enough) else \
                self._zero(embeddings, labels)
        return torch.where(enough, self._reduce(rows, embeddings, labels, (n_pos, n_neg)),
                           self._zero(embeddings, labels))

    def _own_forward(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_emb = ref_emb is None or ref_emb is embeddings
        same_labels = ref_emb is None or ref_labels is labels  # PML's get_all_pairs_indices rule
        labels, ref_labels = check_forward_inputs(
            embeddings, labels, ref_emb, ref_labels, labels_required=indices_tuple is None
        )
        self_mode = same_emb and same_labels
        n_refs = embeddings.shape[0] if ref_emb is None else ref_emb.shape[0]
        lists = None
        if indices_tuple is None and same_labels and not self_mode:
            # the detached-reference call loss(E, L, ref_emb=E.detach(), ref_labels=L): PML drops (i, i)
            lists, counts = _all_pair_lists_without_self_pairs(labels, labels)
        elif indices_tuple is None:
            # PML: `if all(len(x) <= 1 for x in indices_tuple): return zero losses`, as a tensor condition
            n_pos, n_neg = all_pair_counts(labels, ref_labels, self_mode)
            rows = self._rows(embeddings, labels, ref_emb, ref_labels, None)
            return self._finish(rows, embeddings, labels, n_pos, n_neg)
        else:
            pairs = as_pairs(indices_tuple, embeddings.device)
            counts = (max(len(pairs[0]), len(pairs[1])), max(len(pairs[2]), len(pairs[3])))
            if max(counts) > 1:
                names = ("indices_tuple[0]", "indices_tuple[1]", "indices_tuple[-2]", "indices_tuple[-1]")
                lists = loss_ops.pair_lists(*pairs, embeddings.shape[0], n_refs, self.as_mask, names)
        if max(counts) <= 1:  # PML: `if all(len(x) <= 1 for x in indices_tuple): return zero losses`
            return self._zero(embeddings, labels)
        rows = self._rows(embeddings, labels, ref_emb, ref_labels, lists)
        return self._finish(rows, embeddings, labels, *counts)

    def forward_against_memory(self, embeddings, labels, memory, memory_labels, own_start: int):
        """The loss over every pair of (embeddings, labels) against a memory bank that holds row i of the batch at
        row (own_start + i) % len(memory), except each row's pair with its own slot: PML's CrossBatchMemory (all
        pairs, self comparisons removed) without its pair lists. The rest of the memory (at most two ranges of
        rows, as views) runs the labels path; only the batch's own slots are listed (O(N^2) indices). Their
        per-row states add up (`_combine_rows`)."""
        labels, memory_labels = check_forward_inputs(embeddings, labels, memory, memory_labels, True)
        own_slots = memory_slots(own_start, embeddings.shape[0], memory.shape[0], memory.device)
        own_labels = memory_labels[own_slots]
        lists, _ = _all_pair_lists_without_self_pairs(labels, own_labels)
        parts = [self._rows(embeddings, labels, memory[own_slots], own_labels, lists)]
        for begin, end in rest_of_memory(own_start, embeddings.shape[0], memory.shape[0]):
            parts.append(self._rows(embeddings, labels, memory[begin:end], memory_labels[begin:end], None))
        n_pos, n_neg = all_pair_counts(labels, memory_labels, False)
        n_pos = n_pos - (labels == own_labels).sum()
        return self._finish(self._combine_rows(*parts), embeddings, labels, n_pos, n_neg)

    def _combine_rows(self, *parts):
        """The per-row state of the union of disjoint reference sets from each set's state: sums (contrastive)."""
        return sum(parts)



class MultiSimilarityLoss(_FusedPairLoss):
    def __init__(self, alpha=2, beta=50, base=0.5, **kwargs):
        self.alpha = check_number(alpha, "alpha", nonzero=True)
        self.beta = check_number(beta, "beta", nonzero=True)
        self.base = check_number(base, "base")
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"alpha": self.alpha, "beta": self.beta, "base": self.base}

    def _fused_reduction(self, reducer):
        # PML's loss is per anchor ("element"): any PML reducer takes it as the fused rows give it
        return "mean" if reducer is None else "pml"

    def _rows(self, embeddings, labels, ref_emb, ref_labels, lists, query_rows=None):
        return loss_ops.multi_similarity_loss_rows(
            embeddings, labels, ref_emb, ref_labels, lists, self.alpha, self.beta, self.base, self.fused_distance,
            query_rows,
        )

    def _combine_rows(self, *parts):
        # acc = log(1 + S) per side: the union's is log(1 + sum S) = log(sum exp(acc) - (K - 1)), shifted by the
        # largest acc (>= 0) so that a large beta cannot overflow; the counts add up
        stacked = torch.stack(parts)
        acc, counts = stacked[..., :2], stacked[..., 2:]
        top = acc.max(0).values.detach()  # a shift only: the union's value and gradient do not depend on it
        spare = (len(parts) - 1) * torch.exp(-top)
        union = top + torch.log(torch.exp(acc - top).sum(0) - spare)
        return torch.cat([union, counts.sum(0)], dim=1)

    def _parts(self, rows):
        # MeanReducer over the anchors: every row of embeddings is one
        per_anchor = rows[:, 0] / self.alpha + rows[:, 1] / self.beta
        return per_anchor.sum().reshape(1), torch.full((1,), rows.shape[0], dtype=rows.dtype, device=rows.device)

    def _reduce(self, rows, embeddings, labels, counts):
        if self.reduction == "mean":
            return super()._reduce(rows, embeddings, labels, counts)
        # PML's shape: [N, 1] (its log-sum-exp keeps the dimension)
        per_anchor = (rows[:, :1] / self.alpha + rows[:, 1:2] / self.beta).to(embeddings.dtype)
        anchors = torch.arange(rows.shape[0], device=rows.device)
        return self.reducer({"loss": {"losses": per_anchor, "indices": anchors, "reduction_type": "element"}},
                            embeddings, labels)

    def _zero(self, embeddings, labels):
        if self.reduction == "mean":
            return super()._zero(embeddings, labels)
        return self.reducer({"loss": {"losses": 0, "indices": None, "reduction_type": "already_reduced"}},
                            embeddings, labels)


class ContrastiveLoss(_FusedPairLoss):
    default_distance = "l2"
    as_mask = False

    def __init__(self, pos_margin=0, neg_margin=1, **kwargs):
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"pos_margin": self.pos_margin, "neg_margin": self.neg_margin}

    def _fused_reduction(self, reducer):
        # PML's losses are per pair; the rows' sums and non-zero counts give these reducers (per side, summed)
        return sum_reduction(reducer, "avg_nonzero")

    def _rows(self, embeddings, labels, ref_emb, ref_labels, lists, query_rows=None):
        return loss_ops.contrastive_loss_rows(
            embeddings, labels, ref_emb, ref_labels, lists, self.pos_margin, self.neg_margin, self.fused_distance,
            query_rows,
        )

    def _parts(self, rows):
        # AvgNonZeroReducer per side: the sum of the non-zero pair losses over their count (0 without any)
        return rows[:, :2].sum(0), rows[:, 2:].sum(0)

    def _reduce(self, rows, embeddings, labels, counts):
        # per side in the embeddings' dtype, then summed (MultipleReducers)
        num, den = self._parts(rows)
        if self.reduction == "mean":  # over every listed pair of the side, zeros included
            den = torch.stack([torch.as_tensor(c, device=rows.device) for c in counts]).to(rows.dtype)
        elif self.reduction == "sum":
            den = torch.ones_like(den)
        return sum(combine_parts(num[k:k + 1], den[k:k + 1]).to(embeddings.dtype) for k in (0, 1))


def combine_parts(num, den):
    """sum of num / den where den > 0 (exact 0 elsewhere), as tensor conditions (no data-dependent branch)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num)).sum()

