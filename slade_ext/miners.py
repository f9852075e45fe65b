"""Drop-in replacements for pytorch-metric-learning's miners, backed by the fused kernels of `slade_ext.ops`.

    from slade_ext import miners          # instead of: from pytorch_metric_learning import miners
    miner = miners.MultiSimilarityMiner(epsilon=0.1)
    a1, p, a2, n = miner(embeddings, labels)

Same constructor arguments, forward(embeddings, labels, ref_emb=None, ref_labels=None), output tuples and self-pair
rule as PML; results equal PML's as sets (the order may differ: pairs come row-major, triplets lexicographic).
Default distances as PML: cosine for MultiSimilarityMiner, L2 of normalised embeddings for the others.
`distance=` takes PML's CosineSimilarity() or LpDistance() (normalised, p=2, power=1); any other distance or PML
option falls back to PML's own miner with one FallbackWarning per instance.
Plus ConfidentPairMiner: SLADE's confident-pair selection (docs/method.md), same calling convention.
"""
from __future__ import annotations

import torch

from . import ops
from ._compat import check_forward_inputs, fused_or_fallback

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

    def _mine(self, embeddings, labels, ref_emb, ref_labels):
        raise NotImplementedError

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        if self.fallback is not None:
            return self.fallback(embeddings, labels, ref_emb, ref_labels)
        labels, ref_labels = check_forward_inputs(embeddings, labels, ref_emb, ref_labels, labels_required=True)
        with torch.no_grad():
            return self._mine(embeddings, labels, ref_emb, ref_labels)


class MultiSimilarityMiner(_FusedMiner):
    default_distance = "cosine"

    def __init__(self, epsilon=0.1, **kwargs):
        self.epsilon = epsilon
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"epsilon": self.epsilon}

    def _mine(self, embeddings, labels, ref_emb, ref_labels):
        return ops.mine_multi_similarity(embeddings, labels, ref_emb, ref_labels, self.epsilon, self.fused_distance)


class PairMarginMiner(_FusedMiner):
    def __init__(self, pos_margin=0.2, neg_margin=0.8, **kwargs):
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"pos_margin": self.pos_margin, "neg_margin": self.neg_margin}

    def _mine(self, embeddings, labels, ref_emb, ref_labels):
        return ops.mine_pair_margin(
            embeddings, labels, ref_emb, ref_labels, self.pos_margin, self.neg_margin, self.fused_distance
        )


class BatchHardMiner(_FusedMiner):
    def _pml_args(self):
        return {}

    def _mine(self, embeddings, labels, ref_emb, ref_labels):
        return ops.mine_batch_hard(embeddings, labels, ref_emb, ref_labels, self.fused_distance)


class TripletMarginMiner(_FusedMiner):
    TYPES = ("all", "hard", "semihard", "easy")

    def __init__(self, margin=0.2, type_of_triplets="all", **kwargs):
        if type_of_triplets not in self.TYPES:
            raise ValueError(f"type_of_triplets must be one of {self.TYPES}, got {type_of_triplets!r}")
        self.margin = margin
        self.type_of_triplets = type_of_triplets
        super().__init__(**kwargs)

    def _pml_args(self):
        return {"margin": self.margin, "type_of_triplets": self.type_of_triplets}

    def _mine(self, embeddings, labels, ref_emb, ref_labels):
        return ops.mine_triplet_margin(
            embeddings,
            labels,
            ref_emb,
            ref_labels,
            self.margin,
            self.type_of_triplets,
            distance=self.fused_distance,
        )


class ConfidentPairMiner(torch.nn.Module):
    """SLADE's confident pairs of an unlabeled batch (docs/method.md): s_ij = cos(W f_i, W f_j) >= t_pos are positives,
    <= t_neg negatives, i != j; nothing while t_pos <= t_neg. Returns (a1, p, a2, n) like PML's pair miners.

    basis: a [K, d] tensor W (then t_pos and t_neg are required), or a FeatureBasis-like module with `weight` and
    `thresholds()` -> (mu_pos, mu_neg) or None before its statistics exist (then nothing is selected); explicit
    t_pos / t_neg override the module's. mode: "literal" (similarity only) or "agree" (positives also need equal
    pseudo labels, negatives different ones; forward's `labels` are the pseudo labels, -1 = unknown).
    """

    def __init__(self, basis, t_pos=None, t_neg=None, mode="literal"):
        super().__init__()
        if mode not in ("literal", "agree"):
            raise ValueError(f'mode must be "literal" or "agree", got {mode!r}')
        if isinstance(basis, torch.Tensor):
            if t_pos is None or t_neg is None:
                raise ValueError("t_pos and t_neg are required when basis is a tensor")
        elif not (hasattr(basis, "weight") and hasattr(basis, "thresholds")):
            raise TypeError("basis must be a [K, d] tensor or a module with `weight` and `thresholds()`")
        self.basis = basis
        self.t_pos = t_pos
        self.t_neg = t_neg
        self.mode = mode

    def _weight_and_thresholds(self):
        if isinstance(self.basis, torch.Tensor):
            return self.basis, self.t_pos, self.t_neg
        stats = self.basis.thresholds()
        t_pos = self.t_pos if self.t_pos is not None else (None if stats is None else stats[0])
        t_neg = self.t_neg if self.t_neg is not None else (None if stats is None else stats[1])
        return self.basis.weight, t_pos, t_neg

    def active(self) -> bool:
        """Whether forward can select anything: the thresholds exist and t_pos > t_neg."""
        _, t_pos, t_neg = self._weight_and_thresholds()
        return t_pos is not None and t_neg is not None and t_pos > t_neg

    def forward(self, embeddings, labels=None, ref_emb=None, ref_labels=None):
        if ref_emb is not None and ref_emb is not embeddings:
            raise ValueError("ConfidentPairMiner selects pairs within the batch: ref_emb must be None or embeddings")
        labels, _ = check_forward_inputs(embeddings, labels, None, None, labels_required=self.mode == "agree")
        weight, t_pos, t_neg = self._weight_and_thresholds()
        with torch.no_grad():
            if t_pos is None or t_neg is None:  # the basis has no statistics yet: nothing is confident
                empty = torch.empty(0, dtype=torch.int64, device=embeddings.device)
                return empty, empty.clone(), empty.clone(), empty.clone()
            pseudo = labels if self.mode == "agree" else None
            return ops.select_confident_pairs(
                embeddings, weight.detach(), float(t_pos), float(t_neg), pseudo, self.mode
            )
