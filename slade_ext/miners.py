"""Drop-in replacements for pytorch-metric-learning's miners, backed by the fused kernels of `slade_ext.ops`.

    from slade_ext import miners          # instead of: from pytorch_metric_learning import miners
    miner = miners.MultiSimilarityMiner(epsilon=0.1)
    a1, p, a2, n = miner(embeddings, labels)

Same constructor arguments, forward(embeddings, labels, ref_emb=None, ref_labels=None), output tuples and self-pair
rules as PML, class by class; results equal PML's as sets (the order may differ: pairs come row-major, triplets
lexicographic). PML's self-pair rules (ref_emb=None counts as ref_emb *being* embeddings, with ref_labels *being*
labels):
- every miner builds its candidate pairs with get_all_pairs_indices: (i, i) is no positive when ref_labels *is*
  labels, whatever ref_emb is (the "detached reference" call miner(E, L, E.detach(), L));
- MultiSimilarityMiner also masks the diagonal of its similarity matrix when ref_emb *is* embeddings.
The fused ops know "against itself" (ref_emb None) and "separate reference set"; the other combinations are
composed here (module `_SelfPairs` below), exactly, with one dense exception: MultiSimilarityMiner on the detached
call (or ref_emb *being* embeddings with a ref_labels object of other values) computes PML's rule on the full
N x M matrix, because its row thresholds then see (i, i) on both sides (docs/architecture.md).
Default distances as PML: cosine for MultiSimilarityMiner, L2 of normalised embeddings for the others.
`distance=` takes PML's CosineSimilarity(), DotProductSimilarity() and LpDistance() (p=2, power 1 or 2), with
normalize_embeddings True or False (slade_ext.distances; distances are computed as PML computes them, so identical
rows are 0 apart); any other distance or PML option falls back to PML's own miner with one FallbackWarning per
instance.
Plus ConfidentPairMiner: SLADE's confident-pair selection (docs/method.md), same calling convention.
"""
from __future__ import annotations

import math

import torch

from . import distances, ops
from ._compat import check_forward_inputs, fused_or_fallback
from .ops import check_number

__all__ = [
    "MultiSimilarityMiner",
    "BatchHardMiner",
    "PairMarginMiner",
    "TripletMarginMiner",
    "ConfidentPairMiner",
]


class _FusedMiner(torch.nn.Module):
    """Shared plumbing: distance mapping, the PML fallback, input checks, no_grad mining."""

    default_distance = "l2"  # PML's default, LpDistance(p=2) of normalised embeddings; MultiSimilarity overrides it

    def __init__(self, distance=None, **pml_options):
        super().__init__()
        self.distance = distance
        self.fused_distance, self.fallback = fused_or_fallback("miners", self, distance, pml_options)

    def _pml_args(self) -> dict:
        raise NotImplementedError

    def _mine(self, embeddings, labels, ref_emb, ref_labels, query_rows=None):
        raise NotImplementedError

    def mine_rows(self, embeddings, labels, query_rows):
        """Rows [begin, end) of embeddings mined against all of them, without self pairs; the indices index
        embeddings (one rank's share of a global batch: slade_ext.distributed)."""
        if self.fallback is not None:
            raise TypeError(f"{type(self).__name__} runs PML's miner here (FallbackWarning): it cannot mine a share "
                            "of the rows; use efficient=False")
        labels, _ = check_forward_inputs(embeddings, labels, None, None, labels_required=True)
        with torch.no_grad():
            return self._mine(embeddings, labels, None, None, query_rows)

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        if self.fallback is not None:
            return self.fallback(embeddings, labels, ref_emb, ref_labels)
        same_emb = ref_emb is None or ref_emb is embeddings
        same_labels = ref_emb is None or ref_labels is labels  # PML's get_all_pairs_indices rule
        labels, ref_labels = check_forward_inputs(embeddings, labels, ref_emb, ref_labels, labels_required=True)
        with torch.no_grad():
            if same_emb and same_labels:
                return self._mine(embeddings, labels, None, None)
            if same_labels:  # separate ref_emb, ref_labels *is* labels: PML drops (i, i) from the positives
                return self._mine_without_self_pairs(embeddings, labels, ref_emb)
            return self._mine_separate(embeddings, labels, embeddings if ref_emb is None else ref_emb, ref_labels)

    def _mine_separate(self, embeddings, labels, ref_emb, ref_labels):
        """ref_labels is another object than labels: every pair, (i, i) included, is a candidate."""
        return self._mine(embeddings, labels, ref_emb, ref_labels)

    def _mine_without_self_pairs(self, embeddings, labels, ref_emb):
        """Pair and triplet filters: mining against ref_emb and removing the (i, i) positives is exact (a negative
        (i, i) cannot exist with the same labels)."""
        out = self._mine(embeddings, labels, ref_emb, labels.clone())
        keep = out[0] != out[1]
        if len(out) == 3:  # triplets (a, p, n): drop those whose positive is the anchor itself
            return tuple(t[keep] for t in out)
        return out[0][keep], out[1][keep], out[2], out[3]


class MultiSimilarityMiner(_FusedMiner):
    default_distance = "cosine"

    def __init__(self, epsilon=0.1, **kwargs):
        self.epsilon = check_number(epsilon, "epsilon")
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"epsilon": self.epsilon}

    def _mine(self, embeddings, labels, ref_emb, ref_labels, query_rows=None):
        return ops.mine_multi_similarity(embeddings, labels, ref_emb, ref_labels, self.epsilon, self.fused_distance,
                                         query_rows)

    def _mine_separate(self, embeddings, labels, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            return self._mine(embeddings, labels, ref_emb, ref_labels)
        # PML masks the diagonal (ref_emb *is* embeddings) although the labels are two objects
        if torch.equal(labels.long(), ref_labels.long()):
            return self._mine(embeddings, labels, None, None)  # equal values: exactly the self comparison
        return _dense_multi_similarity(embeddings, labels, ref_emb, ref_labels, self.epsilon, self.fused_distance,
                                       mask_diagonal=True)

    def _mine_without_self_pairs(self, embeddings, labels, ref_emb):
        # PML leaves (i, i) in both sorting matrices here (neither a positive nor a negative, not masked), so it
        # enters both row thresholds and both outputs: no composition of the fused op reproduces that exactly.
        return _dense_multi_similarity(embeddings, labels, ref_emb, labels, self.epsilon, self.fused_distance,
                                       mask_diagonal=False, drop_self_positives=True)


class PairMarginMiner(_FusedMiner):
    def __init__(self, pos_margin=0.2, neg_margin=0.8, **kwargs):
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"pos_margin": self.pos_margin, "neg_margin": self.neg_margin}

    def _mine(self, embeddings, labels, ref_emb, ref_labels, query_rows=None):
        return ops.mine_pair_margin(embeddings, labels, ref_emb, ref_labels, self.pos_margin, self.neg_margin,
                                    self.fused_distance, query_rows)


class BatchHardMiner(_FusedMiner):
    def _pml_args(self):
        return {}

    def _mine(self, embeddings, labels, ref_emb, ref_labels, query_rows=None):
        return ops.mine_batch_hard(embeddings, labels, ref_emb, ref_labels, self.fused_distance, query_rows)

    def _mine_without_self_pairs(self, embeddings, labels, ref_emb):
        """Mine against ref_emb; where the hardest positive came out as (i, i), mine anchor i's positives again
        with ref i relabelled to a fresh class (so it is no positive of i), one anchor per class per round (the
        other relabelled refs are then of other classes: they were no positives of i either). The negative stays
        the first pass's: (i, i) is no negative with the same labels. Exact, in the kernel's distances and ties."""
        _, classes = torch.unique(labels.long(), return_inverse=True)
        n_classes = int(classes.max()) + 1 if classes.numel() else 0
        a, p, n = self._mine(embeddings, classes, ref_emb, classes.clone())
        redo = a[a == p]
        keep = a != p
        out_a, out_p, out_n = [a[keep]], [p[keep]], [n[keep]]
        if redo.numel():
            neg_of = torch.full((labels.shape[0],), -1, dtype=torch.int64, device=a.device)
            neg_of[a] = n
            by_class = {}
            for i in redo.tolist():
                by_class.setdefault(int(classes[i]), []).append(i)
            for r in range(max(len(v) for v in by_class.values())):
                anchors = torch.tensor([v[r] for v in by_class.values() if len(v) > r], device=a.device)
                ref_classes = classes.clone()
                ref_classes[anchors] = n_classes + torch.arange(anchors.numel(), device=a.device)
                a2, p2, _ = self._mine(embeddings[anchors], classes[anchors], ref_emb, ref_classes)
                out_a.append(anchors[a2])
                out_p.append(p2)
                out_n.append(neg_of[anchors[a2]])
        a, p, n = torch.cat(out_a), torch.cat(out_p), torch.cat(out_n)
        order = torch.argsort(a)
        return a[order], p[order], n[order]


class TripletMarginMiner(_FusedMiner):
    TYPES = ("all", "hard", "semihard", "easy")

    def __init__(self, margin=0.2, type_of_triplets="all", **kwargs):
        if type_of_triplets not in self.TYPES:
            raise ValueError(f"type_of_triplets must be one of {self.TYPES}, got {type_of_triplets!r}")
        self.margin = check_number(margin, "margin")
        self.type_of_triplets = type_of_triplets
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"margin": self.margin, "type_of_triplets": self.type_of_triplets}

    def _mine(self, embeddings, labels, ref_emb, ref_labels, query_rows=None):
        return ops.mine_triplet_margin(
            embeddings,
            labels,
            ref_emb,
            ref_labels,
            self.margin,
            self.type_of_triplets,
            distance=self.fused_distance,
            query_rows=query_rows,
        )


class ConfidentPairMiner(torch.nn.Module):
    """SLADE's confident pairs of an unlabeled batch (docs/method.md): s_ij = cos(W f_i, W f_j) >= t_pos are positives,
    <= t_neg negatives, i != j; nothing while t_pos <= t_neg. Returns (a1, p, a2, n) like PML's pair miners.

    basis: a [K, d] tensor W (then t_pos and t_neg are required), or a FeatureBasis-like module with `weight` and
    `threshold_tensors(quantiles)` -> (ready, T1, T2), 0-dim tensors, ready False before its statistics exist (then
    nothing is selected); explicit t_pos / t_neg override the module's. quantiles=(q+, q-): the module's thresholds
    as quantiles of its moving distributions instead of their means (FeatureBasis.threshold_tensors). The module's
    thresholds are read only inside the op, so torch.compile(fullgraph=True) traces the miner. forward's `labels` are the pseudo labels
    (-1 = unknown, in no pair of "agree" or "veto"). mode:
    - "literal": the similarity alone decides (docs/method.md as written);
    - "agree": positives also need equal pseudo labels, negatives different ones;
    - "veto": positives as "agree"; negatives are every pair of different pseudo labels except those the basis calls
      similar (s >= t_pos): the basis removes likely false negatives instead of choosing the easy ones (t_neg plays
      no part). Two passes of the selection kernel.
    max_pairs: None, or the most pairs (positives and negatives together) one call may select; past it the call
    raises ValueError instead of taking the memory (ops.select_confident_pairs).
    """

    MODES = ("literal", "agree", "veto")

    def __init__(self, basis, t_pos=None, t_neg=None, mode="literal", quantiles=None, max_pairs=None):
        super().__init__()
        self.max_pairs = max_pairs
        ops._max_pairs(max_pairs)  # validates it now, not at the first call
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if quantiles is not None:
            if not isinstance(quantiles, (tuple, list)) or len(quantiles) != 2:
                raise ValueError(f"quantiles must be None or (q_pos, q_neg), got {quantiles!r}")
            quantiles = tuple(check_number(q, name) for q, name in zip(quantiles, ("quantiles[0]", "quantiles[1]")))
            if not all(0 < q < 1 for q in quantiles):
                raise ValueError(f"quantiles must lie strictly between 0 and 1, got {quantiles}")
        self.quantiles = quantiles
        t_pos = None if t_pos is None else check_number(t_pos, "t_pos")
        t_neg = None if t_neg is None else check_number(t_neg, "t_neg")
        if isinstance(basis, torch.Tensor):
            if t_pos is None or t_neg is None:
                raise ValueError("t_pos and t_neg are required when basis is a tensor")
        elif not (hasattr(basis, "weight") and hasattr(basis, "threshold_tensors")):
            raise TypeError("basis must be a [K, d] tensor or a module with `weight` and `threshold_tensors()`")
        self.basis = basis
        self.t_pos = t_pos
        self.t_neg = t_neg
        self.mode = mode

    def _weight_and_thresholds(self):
        """(weight, t_pos, t_neg, ready). The thresholds are numbers (a tensor basis, or explicit ones) or a module's
        0-dim tensors (threshold_tensors: read only when the op runs, so torch.compile traces the call). ready is
        None, or while a module's threshold that is used has no statistics yet, a False bool tensor."""
        if isinstance(self.basis, torch.Tensor):
            return self.basis, self.t_pos, self.t_neg, None
        ready, t_pos, t_neg = self.basis.threshold_tensors(self.quantiles)
        uses_module = self.t_pos is None or (self.t_neg is None and self.mode != "veto")
        t_pos = t_pos if self.t_pos is None else self.t_pos
        t_neg = t_neg if self.t_neg is None else self.t_neg
        return self.basis.weight, t_pos, t_neg, ready if uses_module else None

    def active(self) -> bool:
        """Whether forward can select anything: the thresholds exist and t_pos > t_neg (veto: t_pos alone counts)."""
        _, t_pos, t_neg, ready = self._weight_and_thresholds()
        if ready is not None and not bool(ready):
            return False
        return self.mode == "veto" or bool(t_pos > t_neg)

    def forward(self, embeddings, labels=None, ref_emb=None, ref_labels=None):
        if ref_emb is not None and ref_emb is not embeddings:
            raise ValueError("ConfidentPairMiner selects pairs within the batch: ref_emb must be None or embeddings")
        return self.mine_rows(embeddings, labels, None)

    def mine_rows(self, embeddings, labels=None, query_rows=None):
        """forward's selection for the rows [begin, end) of embeddings against all of them (None: every row); the
        indices index embeddings."""
        labels, _ = check_forward_inputs(embeddings, labels, None, None, labels_required=self.mode != "literal")
        weight, t_pos, t_neg, ready = self._weight_and_thresholds()
        with torch.no_grad():
            weight = weight.detach()
            if self.mode == "veto":
                return self._veto(embeddings, weight, t_pos, ready, labels, query_rows, self.max_pairs)
            if ready is not None:  # no statistics yet: t_pos = t_neg, and nothing is confident
                t_pos, t_neg = (_unless(ready, t, 0.0) for t in (t_pos, t_neg))
            pseudo = labels if self.mode == "agree" else None
            return ops.select_confident_pairs(
                embeddings, weight, t_pos, t_neg, pseudo, self.mode, query_rows, self.max_pairs
            )

    @staticmethod
    def _veto(embeddings, weight, t_pos, ready, labels, query_rows, max_pairs):
        """"agree" positives (s >= t_pos) plus "agree" negatives under the largest threshold below t_pos in the
        kernel's compute dtype (so s < t_pos exactly): the similarity is a cosine in [-1, 1], so the bounds +-2
        switch the other side off (and both sides while there are no statistics yet)."""
        dtype = ops._compute_dtype(embeddings)
        bound = torch.as_tensor(t_pos, dtype=dtype)
        below = torch.nextafter(bound, torch.full_like(bound, -math.inf))
        if ready is not None:
            t_pos, below = _unless(ready, t_pos, 2.0), _unless(ready, below, -2.0)
        a1, p, _, _ = ops.select_confident_pairs(embeddings, weight, t_pos, -2.0, labels, "agree", query_rows,
                                                 max_pairs)
        if max_pairs is not None:  # the negatives get what the positives left
            max_pairs -= a1.numel()
        _, _, a2, n = ops.select_confident_pairs(embeddings, weight, 2.0, below, labels, "agree", query_rows, max_pairs)
        return a1, p, a2, n


def _unless(ready: torch.Tensor, threshold, off: float) -> torch.Tensor:
    """threshold where `ready`, else `off`, as a float64 0-dim tensor on ready's device (no host read)."""
    value = torch.as_tensor(threshold, dtype=torch.float64, device=ready.device)
    return torch.where(ready, value, torch.full_like(value, off))


def _dense_multi_similarity(emb, labels, ref_emb, ref_labels, epsilon, distance, mask_diagonal,
                            drop_self_positives=False):
    """PML's MultiSimilarityMiner.mine on the full N x M matrix, for the self-pair combinations the fused op cannot
    express (see MultiSimilarityMiner). drop_self_positives: get_all_pairs_indices with ref_labels *being* labels."""
    mat = distances.dense_matrix(emb, ref_emb, distance)
    inverted = distances.is_inverted(distance)
    matches = labels.long()[:, None] == ref_labels.long()[None, :]
    diffs = ~matches
    if drop_self_positives:
        matches.fill_diagonal_(False)
    if not matches.any() or not diffs.any():
        empty = torch.empty(0, dtype=torch.int64, device=emb.device)
        return empty, empty.clone(), empty.clone(), empty.clone()
    pos_ignore, neg_ignore = (float("inf"), float("-inf")) if inverted else (float("-inf"), float("inf"))
    pos_sorting = mat.masked_fill(diffs, pos_ignore)
    neg_sorting = mat.masked_fill(matches, neg_ignore)
    if mask_diagonal:
        pos_sorting.fill_diagonal_(pos_ignore)
        neg_sorting.fill_diagonal_(neg_ignore)
    pos_sorted, pos_idx = torch.sort(pos_sorting, dim=1)
    neg_sorted, neg_idx = torch.sort(neg_sorting, dim=1)
    if inverted:
        hard_pos = torch.where(pos_sorted - epsilon < neg_sorted[:, -1].unsqueeze(1))
        hard_neg = torch.where(neg_sorted + epsilon > pos_sorted[:, 0].unsqueeze(1))
    else:
        hard_pos = torch.where(pos_sorted + epsilon > neg_sorted[:, 0].unsqueeze(1))
        hard_neg = torch.where(neg_sorted - epsilon < pos_sorted[:, -1].unsqueeze(1))
    a1, p = hard_pos[0], pos_idx[hard_pos[0], hard_pos[1]]
    a2, n = hard_neg[0], neg_idx[hard_neg[0], hard_neg[1]]
    return _row_major(a1, p, ref_emb.shape[0]) + _row_major(a2, n, ref_emb.shape[0])


def _row_major(a, b, m: int):
    order = torch.argsort(a * m + b)
    return a[order], b[order]
