"""Pure-PyTorch reference of every op in `slade_ext.ops`: the oracle of the tests, the baseline of the benchmarks.

Each function builds the full N x M matrix and masks on purpose (clarity over memory) and follows the same
conventions as the fused op (see `slade_ext.ops`): computation in float32 (float64 stays float64), ref_emb=None
means "against itself without (i, i)", pairs row-major, triplets lexicographic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import distances


def _compute(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def _project(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    x = _compute(x)
    return F.normalize(x @ basis.to(x.dtype).T, dim=-1)


def basis_similarity(emb, basis, ref_emb=None):
    r = _project(emb, basis)
    q = r if ref_emb is None else _project(ref_emb, basis)
    return (r @ q.transpose(-1, -2)).to(emb.dtype)


def _self_mask(n: int, m: int, self_mode: bool, device) -> torch.Tensor:
    if not self_mode:
        return torch.zeros(n, m, dtype=torch.bool, device=device)
    return torch.eye(n, m, dtype=torch.bool, device=device)


def _refs(emb, labels, ref_emb, ref_labels):
    """(ref_emb, ref_labels, self_mode) with PML's identity rule."""
    if ref_emb is None or (ref_emb is emb and (ref_labels is None or ref_labels is labels)):
        return emb, labels, True
    return ref_emb, ref_labels, False


def basis_pair_stats(emb, basis, labels, ref_emb=None, ref_labels=None):
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    r = _project(emb, basis)
    s = r @ (r if self_mode else _project(ref_emb, basis)).T
    labels, ref_labels = labels.long(), ref_labels.long()
    valid = (labels[:, None] >= 0) & (ref_labels[None, :] >= 0) & ~_self_mask(*s.shape, self_mode, s.device)
    same = labels[:, None] == ref_labels[None, :]
    out = []
    for mask in (valid & same, valid & ~same):
        values = s[mask]
        if values.numel() == 0:
            zero = s.sum() * 0  # keeps the graph, so gradients are defined (and zero)
            out += [zero, zero]
        else:
            mu = values.mean()
            out += [mu, ((values - mu) ** 2).mean()]
    n_pos = (valid & same).sum()
    n_neg = (valid & ~same).sum()
    return out[0], out[1], out[2], out[3], n_pos, n_neg


def _candidates(labels, ref_labels, self_mode, n, m, device):
    same = labels.long()[:, None] == ref_labels.long()[None, :]
    return same & ~_self_mask(n, m, self_mode, device), ~same


def _pairs(pos_mask, neg_mask):
    a1, p = torch.where(pos_mask)
    a2, n = torch.where(neg_mask)
    return a1, p, a2, n


def mine_multi_similarity(emb, labels, ref_emb=None, ref_labels=None, epsilon=0.1, distance="cosine"):
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    v = distances.dense_matrix(emb, ref_emb, distance)
    pos_c, neg_c = _candidates(labels, ref_labels, self_mode, *v.shape, v.device)
    inf = torch.tensor(float("inf"), dtype=v.dtype, device=v.device)
    min_pos = torch.where(pos_c, v, inf).amin(1, keepdim=True)
    max_pos = torch.where(pos_c, v, -inf).amax(1, keepdim=True)
    min_neg = torch.where(neg_c, v, inf).amin(1, keepdim=True)
    max_neg = torch.where(neg_c, v, -inf).amax(1, keepdim=True)
    eps = torch.tensor(epsilon, dtype=v.dtype)
    if distances.is_inverted(distance):
        pos, neg = v - eps < max_neg, v + eps > min_pos
    else:
        pos, neg = v + eps > min_neg, v - eps < max_pos
    return _pairs(pos_c & pos, neg_c & neg)


def mine_pair_margin(emb, labels, ref_emb=None, ref_labels=None, pos_margin=0.2, neg_margin=0.8, distance="cosine"):
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    v = distances.dense_matrix(emb, ref_emb, distance)
    pos_c, neg_c = _candidates(labels, ref_labels, self_mode, *v.shape, v.device)
    pm = torch.tensor(pos_margin, dtype=v.dtype)
    nm = torch.tensor(neg_margin, dtype=v.dtype)
    if distances.is_inverted(distance):
        return _pairs(pos_c & (v < pm), neg_c & (v > nm))
    return _pairs(pos_c & (v > pm), neg_c & (v < nm))


def _first_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True per row (argmax returns the first maximum)."""
    return mask.to(torch.uint8).argmax(dim=1)


def mine_batch_hard(emb, labels, ref_emb=None, ref_labels=None, distance="cosine"):
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    v = distances.dense_matrix(emb, ref_emb, distance)
    pos_c, neg_c = _candidates(labels, ref_labels, self_mode, *v.shape, v.device)
    inf = torch.tensor(float("inf"), dtype=v.dtype, device=v.device)
    if distances.is_inverted(distance):  # hardest positive = least similar, hardest negative = most similar
        best_pos = torch.where(pos_c, v, inf).amin(1, keepdim=True)
        best_neg = torch.where(neg_c, v, -inf).amax(1, keepdim=True)
    else:
        best_pos = torch.where(pos_c, v, -inf).amax(1, keepdim=True)
        best_neg = torch.where(neg_c, v, inf).amin(1, keepdim=True)
    keep = pos_c.any(1) & neg_c.any(1)
    p = _first_index(pos_c & (v == best_pos))
    n = _first_index(neg_c & (v == best_neg))
    a = torch.nonzero(keep).flatten()
    return a, p[a], n[a]


def mine_triplet_margin(
    emb,
    labels,
    ref_emb=None,
    ref_labels=None,
    margin=0.2,
    type_of_triplets="all",
    max_triplets_per_anchor=None,
    distance="cosine",
):
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    v = distances.dense_matrix(emb, ref_emb, distance)
    pos_c, neg_c = _candidates(labels, ref_labels, self_mode, *v.shape, v.device)
    tm = v[:, :, None] - v[:, None, :] if distances.is_inverted(distance) else v[:, None, :] - v[:, :, None]
    margin = torch.tensor(margin, dtype=v.dtype)
    conditions = {
        "all": tm <= margin,
        "hard": (tm <= margin) & (tm <= 0),
        "semihard": (tm <= margin) & (tm > 0),
        "easy": tm > margin,
    }
    if type_of_triplets not in conditions:
        raise ValueError(f"type_of_triplets must be one of {sorted(conditions)}, got {type_of_triplets!r}")
    keep = pos_c[:, :, None] & neg_c[:, None, :] & conditions[type_of_triplets]
    if max_triplets_per_anchor is not None:
        rank = keep.flatten(1).cumsum(1).view_as(keep)
        keep &= rank <= max_triplets_per_anchor
    return torch.where(keep)


def select_confident_pairs(emb, basis, t_pos, t_neg, pseudo_labels=None, mode="literal"):
    if mode not in ("literal", "agree"):
        raise ValueError(f'mode must be "literal" or "agree", got "{mode}"')
    s = basis_similarity(_compute(emb), basis)
    not_self = ~torch.eye(*s.shape, dtype=torch.bool, device=s.device)
    if t_pos <= t_neg:
        not_self = torch.zeros_like(not_self)
    pos = not_self & (s >= torch.tensor(t_pos, dtype=s.dtype))
    neg = not_self & (s <= torch.tensor(t_neg, dtype=s.dtype))
    if mode == "agree":
        if pseudo_labels is None:
            raise ValueError('mode="agree" needs pseudo_labels')
        pl = pseudo_labels.long()
        known = (pl[:, None] >= 0) & (pl[None, :] >= 0)
        same = pl[:, None] == pl[None, :]
        pos &= known & same
        neg &= known & ~same
    return _pairs(pos, neg)


# ---- losses (pytorch-metric-learning's MultiSimilarityLoss and ContrastiveLoss with their default reducers) ----


def _loss_pairs(emb, labels, ref_emb, ref_labels, indices_tuple):
    """(values, pos_mask-or-pairs inputs): the closeness matrix plus PML's (a1, p, a2, n)."""
    ref_emb, ref_labels, self_mode = _refs(emb, labels, ref_emb, ref_labels)
    if indices_tuple is None:
        pos_c, neg_c = _candidates(labels, ref_labels, self_mode, emb.shape[0], ref_emb.shape[0], emb.device)
        return ref_emb, _pairs(pos_c, neg_c)
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        return ref_emb, (a, p, a, n)
    return ref_emb, tuple(indices_tuple)


def _margin(x, y, distance):
    return y - x if distances.is_inverted(distance) else x - y


def multi_similarity_loss(
    emb, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, alpha=2.0, beta=50.0, base=0.5,
    distance="cosine",
):
    ref_emb, (a1, p, a2, n) = _loss_pairs(emb, labels, ref_emb, ref_labels, indices_tuple)
    if all(len(x) <= 1 for x in (a1, p, a2, n)):
        return (emb * 0).sum()
    v = distances.dense_matrix(emb, ref_emb, distance)
    pos_mask = torch.zeros_like(v, dtype=torch.bool)
    neg_mask = torch.zeros_like(v, dtype=torch.bool)
    pos_mask[a1, p] = True
    neg_mask[a2, n] = True

    def lse_one(x, mask):  # log(1 + sum exp(x)) over the mask, per row
        x = torch.cat([x.masked_fill(~mask, float("-inf")), torch.zeros_like(x[:, :1])], dim=1)
        return torch.logsumexp(x, dim=1)

    pos = lse_one(alpha * _margin(v, base, distance), pos_mask) / alpha
    neg = lse_one(beta * _margin(base, v, distance), neg_mask) / beta
    return (pos + neg).mean().to(emb.dtype)


def contrastive_loss(
    emb, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, pos_margin=0.0, neg_margin=1.0,
    distance="l2",
):
    ref_emb, (a1, p, a2, n) = _loss_pairs(emb, labels, ref_emb, ref_labels, indices_tuple)
    if all(len(x) <= 1 for x in (a1, p, a2, n)):
        return (emb * 0).sum()
    v = distances.dense_matrix(emb, ref_emb, distance)

    def avg_non_zero(losses):
        losses = losses[losses > 0]
        return losses.mean() if losses.numel() else (emb * 0).sum().to(v.dtype)

    pos = avg_non_zero(torch.relu(_margin(v[a1, p], pos_margin, distance)))
    neg = avg_non_zero(torch.relu(_margin(neg_margin, v[a2, n], distance)))
    return pos.to(emb.dtype) + neg.to(emb.dtype)
