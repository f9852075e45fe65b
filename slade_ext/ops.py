"""Typed wrappers of the `torch.ops.slade` kernels, with their fake (torch.compile) and autograd registrations.

Conventions shared by every op:
- Embeddings are [N, d] floating tensors (float32/float64/float16/bfloat16; half types accumulate in float32).
  NaN or Inf anywhere in an embedding or basis raises ValueError naming the argument.
- Labels are 1-D integer tensors on the embeddings' device.
- ref_emb=None (or ref_emb *is* emb) compares the set with itself and skips the pair (i, i), as
  pytorch-metric-learning does; any other ref_emb is a separate reference set and nothing is skipped.
- `distance` (miners, and the losses of `slade_ext.loss_ops`) names one of pytorch-metric-learning's distances:
  "cosine" (CosineSimilarity), "dot" (DotProductSimilarity(normalize_embeddings=False)), "l2" / "l2sq"
  (LpDistance(), power 1 / 2) and "euclidean" / "sqeuclidean" (LpDistance(normalize_embeddings=False), power 1 /
  2). Distances are computed as torch.cdist computes them, as PML does: identical rows are 0 apart.
- Index outputs are int64 on the embeddings' device, in a documented order: pairs row-major (anchor ascending,
  then reference ascending), triplets lexicographic in (anchor, positive, negative).
"""
from __future__ import annotations

import numbers

import operator

import torch

from . import _loader

_loader.load()

__all__ = [
    "basis_similarity",
    "basis_pair_stats",
    "mine_multi_similarity",
    "mine_pair_margin",
    "mine_batch_hard",
    "mine_triplet_margin",
    "select_confident_pairs",
]


def check_number(value, name: str, *, positive: bool = False, nonzero: bool = False, allow_inf: bool = False):
    """`value` as a float, or ValueError/TypeError naming `name` when it is not a finite real number (NaN never
    passes; +-inf only with allow_inf) or breaks `positive` / `nonzero`."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        value = float(value)  # a one-element tensor is read once, as before
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if value != value or (not allow_inf and value in (float("inf"), float("-inf"))):
        raise ValueError(f"{name} must be {'a number (not NaN)' if allow_inf else 'finite'}, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonzero and value == 0:
        raise ValueError(f"{name} must be non-zero, got {value}")
    return value


def check_same_dtype_and_device(emb, name: str, other, other_name: str) -> None:
    """ValueError / TypeError naming `other_name` when it is not on `emb`'s device (or, for a floating tensor, not of
    its dtype): the kernels would otherwise fail deep inside with a message naming no argument."""
    if other is None or not isinstance(other, torch.Tensor) or not isinstance(emb, torch.Tensor):
        return
    if other.device != emb.device:
        raise ValueError(f"{other_name} is on {other.device} but the {name} are on {emb.device}")
    if other.dtype.is_floating_point and emb.dtype.is_floating_point and other.dtype != emb.dtype:
        raise TypeError(f"{other_name} has dtype {other.dtype} but the {name} have {emb.dtype} (convert one of them)")


def _check_pair_inputs(emb, labels=None, ref_emb=None, ref_labels=None, basis=None, labels_name="labels"):
    check_same_dtype_and_device(emb, "embeddings", ref_emb, "ref_emb")
    check_same_dtype_and_device(emb, "embeddings", labels, labels_name)
    check_same_dtype_and_device(emb, "embeddings", ref_labels, "ref_labels")
    if basis is not None and isinstance(basis, torch.Tensor) and isinstance(emb, torch.Tensor):
        if basis.device != emb.device:
            raise ValueError(f"basis is on {basis.device} but the embeddings are on {emb.device}")


def _self_ref(emb, labels, ref_emb, ref_labels):
    """Maps PML's identity rule onto the ops' convention: ref_emb None means "against itself, no self-pairs"."""
    if ref_emb is emb and (ref_labels is None or ref_labels is labels):
        return None, None
    return ref_emb, ref_labels


def query_range(query_rows) -> tuple[int, int]:
    """The ops' (query_begin, query_end) for `query_rows`: None (every row of emb) or (begin, end), the rows of emb
    that are queries against all of emb (one rank's share of a global batch, slade_ext.distributed)."""
    if query_rows is None:
        return 0, -1
    if not isinstance(query_rows, (tuple, list)) or len(query_rows) != 2:
        raise ValueError(f"query_rows must be None or (begin, end), got {query_rows!r}")
    try:
        begin, end = (operator.index(v) for v in query_rows)
    except TypeError:
        raise ValueError(f"query_rows must hold two integers, got {query_rows!r}") from None
    return begin, end


# ---- basis similarity ------------------------------------------------------------------------------------------


def basis_similarity(emb: torch.Tensor, basis: torch.Tensor, ref_emb: torch.Tensor | None = None) -> torch.Tensor:
    """s_ij = cos(W f_i, W g_j) for emb f [N, d] (or [B, N, d]), ref g (default f) and basis W [K, d].

    Returns [N, M] (or [B, N, M]) in emb's dtype; differentiable in emb, ref_emb and basis.
    """
    _check_pair_inputs(emb, ref_emb=ref_emb, basis=basis)
    return torch.ops.slade.basis_similarity(emb, basis, ref_emb)


def basis_pair_stats(
    emb: torch.Tensor,
    basis: torch.Tensor,
    labels: torch.Tensor,
    ref_emb: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    query_rows: tuple[int, int] | None = None,
):
    """Moments of the basis similarity over same-label and different-label pairs, without storing N x M.

    Returns (mu_pos, var_pos, mu_neg, var_neg, n_pos, n_neg): 0-dim float tensors (population variance) and int64
    counts. Pairs where either label is negative (-1 = unknown) are ignored, and so is (i, i) when ref_emb is None.
    A side without pairs gives mean 0 and variance 0 (check the count). Differentiable in emb, ref_emb and basis.
    query_rows=(begin, end), with ref_emb None: only the pairs whose first row is in [begin, end) (query_range).
    """
    _check_pair_inputs(emb, labels, ref_emb, ref_labels, basis)
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    return torch.ops.slade.basis_pair_stats(emb, basis, labels, ref_emb, ref_labels, *query_range(query_rows))


# ---- mining ----------------------------------------------------------------------------------------------------


# Every miner takes query_rows (query_range): with ref_emb None, only rows [begin, end) of emb mine, against all of
# emb; the returned indices index emb. The ones whose output can grow to N * M (all but batch hard) take max_pairs:
# None, or the most pairs (both sides together) or triplets the call may return; past it the call raises
# ValueError naming max_pairs instead of taking the memory (the CPU ops also stop before exceeding the memory
# available, `torch.OutOfMemoryError`).


def _max_pairs(max_pairs) -> int:
    if max_pairs is None:
        return -1
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, numbers.Integral) or max_pairs < 0:
        raise ValueError(f"max_pairs must be None or an integer >= 0, got {max_pairs!r}")
    return int(max_pairs)


def mine_multi_similarity(
    emb, labels, ref_emb=None, ref_labels=None, epsilon: float = 0.1, distance: str = "cosine", query_rows=None,
    max_pairs=None,
):
    """pytorch-metric-learning's MultiSimilarityMiner rule. Returns (a1, p, a2, n)."""
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    epsilon = check_number(epsilon, "epsilon")
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    return torch.ops.slade.mine_multi_similarity(
        emb, labels, ref_emb, ref_labels, epsilon, distance, *query_range(query_rows), _max_pairs(max_pairs)
    )


def mine_pair_margin(
    emb, labels, ref_emb=None, ref_labels=None, pos_margin: float = 0.2, neg_margin: float = 0.8, distance="cosine",
    query_rows=None, max_pairs=None,
):
    """pytorch-metric-learning's PairMarginMiner rule. Returns (a1, p, a2, n)."""
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    pos_margin, neg_margin = check_number(pos_margin, "pos_margin"), check_number(neg_margin, "neg_margin")
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    return torch.ops.slade.mine_pair_margin(
        emb, labels, ref_emb, ref_labels, pos_margin, neg_margin, distance, *query_range(query_rows),
        _max_pairs(max_pairs),
    )


def mine_batch_hard(emb, labels, ref_emb=None, ref_labels=None, distance: str = "cosine", query_rows=None):
    """pytorch-metric-learning's BatchHardMiner rule (ties -> smallest index). Returns (a, p, n)."""
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    return torch.ops.slade.mine_batch_hard(emb, labels, ref_emb, ref_labels, distance, *query_range(query_rows))


def mine_triplet_margin(
    emb,
    labels,
    ref_emb=None,
    ref_labels=None,
    margin: float = 0.2,
    type_of_triplets: str = "all",
    max_triplets_per_anchor: int | None = None,
    distance: str = "cosine",
    query_rows=None,
    max_pairs=None,
):
    """pytorch-metric-learning's TripletMarginMiner rule ("all", "hard", "semihard", "easy").

    max_triplets_per_anchor keeps each anchor's first k triplets in (positive, negative) order. Returns (a, p, n).
    """
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    margin = check_number(margin, "margin")
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    cap = -1 if max_triplets_per_anchor is None else int(max_triplets_per_anchor)
    return torch.ops.slade.mine_triplet_margin(
        emb, labels, ref_emb, ref_labels, margin, type_of_triplets, cap, distance, *query_range(query_rows),
        _max_pairs(max_pairs),
    )


# ---- confident-pair selection ----------------------------------------------------------------------------------


def select_confident_pairs(
    emb: torch.Tensor,
    basis: torch.Tensor,
    t_pos: float,
    t_neg: float,
    pseudo_labels: torch.Tensor | None = None,
    mode: str = "literal",
    query_rows=None,
    max_pairs=None,
):
    """SLADE's confident pairs of an unlabeled batch (docs/method.md): s_ij = cos(W f_i, W f_j), i != j.

    literal: positives s >= t_pos, negatives s <= t_neg. agree: positives also need equal pseudo labels and
    negatives different ones (label -1 takes part in neither). Nothing is selected while t_pos <= t_neg.
    Returns (a1, p, a2, n); query_rows and max_pairs as the miners'. t_pos and t_neg may be numbers or one-element
    tensors (a FeatureBasis's buffers); tensors are read only when the op runs, so torch.compile(fullgraph=True)
    traces such a call.
    """
    _check_pair_inputs(emb, pseudo_labels, basis=basis, labels_name="pseudo_labels")
    args = (pseudo_labels, mode, *query_range(query_rows), _max_pairs(max_pairs))
    if isinstance(t_pos, torch.Tensor) or isinstance(t_neg, torch.Tensor):
        t_pos, t_neg = (_threshold_tensor(t, name) for t, name in ((t_pos, "t_pos"), (t_neg, "t_neg")))
        return torch.ops.slade.select_confident_pairs_tensor_thresholds(emb, basis, t_pos, t_neg, *args)
    t_pos, t_neg = check_number(t_pos, "t_pos"), check_number(t_neg, "t_neg")
    return torch.ops.slade.select_confident_pairs(emb, basis, t_pos, t_neg, *args)


def _threshold_tensor(t, name: str) -> torch.Tensor:
    """A threshold as a float64 one-element tensor (a number is checked as check_number does)."""
    if not isinstance(t, torch.Tensor):
        return torch.tensor(check_number(t, name), dtype=torch.float64)
    if t.numel() != 1 or not t.dtype.is_floating_point:
        raise ValueError(f"{name} must be a number or a one-element floating tensor, got {t.dtype} {tuple(t.shape)}")
    return t.detach().to(torch.float64)


# ---- fake kernels: shapes for torch.compile --------------------------------------------------------------------


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@torch.library.register_fake("slade::basis_similarity")
def _(emb, basis, ref_emb=None):
    ref = emb if ref_emb is None else ref_emb
    return emb.new_empty((*emb.shape[:-1], ref.shape[-2]))


def _fake_basis_grads(emb, basis, ref_emb, output_mask):
    """(grad_emb, grad_basis, grad_ref_emb); an empty [0] tensor where not asked for (or no ref_emb)."""
    none = emb.new_empty((0,))
    want_emb, want_basis, want_ref = output_mask
    return (
        torch.empty_like(emb) if want_emb else none,
        torch.empty_like(basis) if want_basis else none.clone(),
        torch.empty_like(ref_emb) if ref_emb is not None and want_ref else none.clone(),
    )


@torch.library.register_fake("slade::basis_similarity_backward")
def _(grad, emb, basis, ref_emb=None, output_mask=(True, True, True)):
    return _fake_basis_grads(emb, basis, ref_emb, output_mask)


@torch.library.register_fake("slade::basis_pair_stats")
def _(emb, basis, labels, ref_emb=None, ref_labels=None, query_begin=0, query_end=-1):
    moment = emb.new_empty((), dtype=_compute_dtype(emb))
    count = emb.new_empty((), dtype=torch.int64)
    return moment, moment.clone(), moment.clone(), moment.clone(), count, count.clone()


@torch.library.register_fake("slade::basis_pair_stats_backward")
def _(grad_stats, emb, basis, labels, ref_emb, ref_labels, stats, query_begin=0, query_end=-1,
      output_mask=(True, True, True)):
    return _fake_basis_grads(emb, basis, ref_emb, output_mask)


def _dynamic_indices(emb, count: int):
    """`count` int64 index vectors of one data-dependent length (pairs share a length only within a side)."""
    size = torch.library.get_ctx().new_dynamic_size()
    return tuple(emb.new_empty((size,), dtype=torch.int64) for _ in range(count))


def _fake_pairs(emb, *args):
    return _dynamic_indices(emb, 2) + _dynamic_indices(emb, 2)


def _fake_triplets(emb, *args):
    return _dynamic_indices(emb, 3)


for _name in ("mine_multi_similarity", "mine_pair_margin", "select_confident_pairs",
              "select_confident_pairs_tensor_thresholds"):
    torch.library.register_fake(f"slade::{_name}", _fake_pairs)
for _name in ("mine_batch_hard", "mine_triplet_margin"):
    torch.library.register_fake(f"slade::{_name}", _fake_triplets)


# ---- autograd --------------------------------------------------------------------------------------------------
# Each backward honours ctx.needs_input_grad: the kernels get an output_mask, compute only the gradients asked for,
# and the others come back as None.


def _wants(ctx, index: int) -> bool:
    """Whether input `index` needs a gradient (an optional input left out of the call needs none)."""
    return index < len(ctx.needs_input_grad) and bool(ctx.needs_input_grad[index])


def _needed(ctx, grad, index: int):
    return grad if _wants(ctx, index) else None


def _similarity_setup(ctx, inputs, output):
    emb, basis, ref_emb = inputs
    ctx.save_for_backward(emb, basis, ref_emb)


def _similarity_backward(ctx, grad):
    emb, basis, ref_emb = ctx.saved_tensors
    mask = [_wants(ctx, i) for i in range(3)]
    grad_emb, grad_basis, grad_ref = torch.ops.slade.basis_similarity_backward(grad, emb, basis, ref_emb, mask)
    return (
        _needed(ctx, grad_emb, 0),
        _needed(ctx, grad_basis, 1),
        None if ref_emb is None else _needed(ctx, grad_ref, 2),
    )


torch.library.register_autograd("slade::basis_similarity", _similarity_backward, setup_context=_similarity_setup)


def _stats_setup(ctx, inputs, output):
    emb, basis, labels, ref_emb, ref_labels, *query = inputs
    mu_pos, var_pos, mu_neg, var_neg, n_pos, n_neg = output
    stats = torch.stack([t.to(torch.float64) for t in (mu_pos, var_pos, mu_neg, var_neg, n_pos, n_neg)])
    ctx.save_for_backward(emb, basis, labels, ref_emb, ref_labels, stats)
    ctx.query = tuple(query)  # (query_begin, query_end): the dispatcher passes the defaults too


def _stats_backward(ctx, g_mu_pos, g_var_pos, g_mu_neg, g_var_neg, _g_n_pos, _g_n_neg):
    emb, basis, labels, ref_emb, ref_labels, stats = ctx.saved_tensors
    grads = [g_mu_pos, g_var_pos, g_mu_neg, g_var_neg]
    grad_stats = torch.stack(
        [torch.zeros((), dtype=torch.float64, device=stats.device) if g is None else g.to(torch.float64) for g in grads]
    )
    mask = [_wants(ctx, i) for i in (0, 1, 3)]  # emb, basis, ref_emb (labels carry no gradient)
    grad_emb, grad_basis, grad_ref = torch.ops.slade.basis_pair_stats_backward(
        grad_stats, emb, basis, labels, ref_emb, ref_labels, stats, *ctx.query, mask
    )
    return (
        _needed(ctx, grad_emb, 0),
        _needed(ctx, grad_basis, 1),
        None,
        None if ref_emb is None else _needed(ctx, grad_ref, 3),
        None,
        None,
        None,
    )


torch.library.register_autograd("slade::basis_pair_stats", _stats_backward, setup_context=_stats_setup)
