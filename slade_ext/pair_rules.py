"""PML's pair rules shared by the losses: how many pairs get_all_pairs_indices finds, and a miner's tuple as pairs."""
from __future__ import annotations

import torch


def all_pair_counts(labels, ref_labels, self_mode: bool):
    """(n_pos, n_neg) of PML's get_all_pairs_indices as 0-dim int64 tensors, in O((N + M) log M) and without
    data-dependent shapes (torch.compile(fullgraph=True) traces it)."""
    ref = labels if self_mode else ref_labels
    sorted_ref = torch.sort(ref.long()).values
    query = labels.long()
    same = (torch.searchsorted(sorted_ref, query, right=True) - torch.searchsorted(sorted_ref, query)).sum()
    n, m = labels.shape[0], ref.shape[0]
    return (same - n if self_mode else same), n * m - same


def as_tensors(indices_tuple, device):
    """A miner's (a, p, n) or (a1, p, a2, n), checked for its form, as tensors on `device`."""
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        raise ValueError("indices_tuple must be (anchors, positives, negatives) or (a1, p, a2, n)")
    return tuple(torch.as_tensor(t).to(device) for t in indices_tuple)


def as_pairs(indices_tuple, device):
    """A miner's (a, p, n) or (a1, p, a2, n) as (a1, p, a2, n) on `device` (PML's convert_to_pairs)."""
    indices_tuple = as_tensors(indices_tuple, device)
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        indices_tuple = (a, p, a, n)
    return indices_tuple


def all_pairs(labels, ref_labels):
    """PML's get_all_pairs_indices(labels, ref_labels) for a separate reference set: (a1, p, a2, n), every pair of
    equal labels and every pair of different ones, as index lists (O(N x M))."""
    same = labels[:, None] == ref_labels[None, :]
    a1, p = torch.where(same)
    a2, n = torch.where(~same)
    return a1, p, a2, n


def as_triplets(indices_tuple):
    """(a, p, n) from a miner's (a, p, n), or from (a1, p, a2, n) as PML's convert_to_triplets: each positive pair
    with each negative pair of the same anchor."""
    if len(indices_tuple) == 3:
        return tuple(indices_tuple)
    a1, p, a2, n = indices_tuple
    p_idx, n_idx = torch.where(a1[:, None] == a2[None, :])
    return a1[p_idx], p[p_idx], n[n_idx]
