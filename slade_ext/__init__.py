"""slade_ext: fused CPU/CUDA kernels for deep metric learning (basis similarity, hard-pair mining, SLADE's
confident-pair selection) with pytorch-metric-learning-compatible miners and losses.

    from slade_ext import miners, losses      # drop-in for pytorch_metric_learning's
    from slade_ext import ops                 # the raw fused ops
"""
from ._loader import build_info
from .ops import (
    basis_pair_stats,
    basis_similarity,
    mine_batch_hard,
    mine_multi_similarity,
    mine_pair_margin,
    mine_triplet_margin,
    select_confident_pairs,
)

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "basis_similarity",
    "basis_pair_stats",
    "mine_multi_similarity",
    "mine_pair_margin",
    "mine_batch_hard",
    "mine_triplet_margin",
    "select_confident_pairs",
]
