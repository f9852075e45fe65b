"""Typed wrappers of the fused loss kernels (`torch.ops.slade.*_loss_rows`), with fake and autograd registrations.

Each op returns a [N, 4] float64 per-row state (pos_acc, neg_acc, pos_count, neg_count) for the N rows of `emb`,
never an N x M matrix:
- multi_similarity_loss_rows: acc = log(1 + sum exp(alpha * margin(v, base))) over the row's positives (and the
  beta/negative analogue), count = pairs the row sees. PML's per-anchor loss is pos_acc / alpha + neg_acc / beta.
- contrastive_loss_rows: acc = sum of the row's non-zero pair losses relu(margin(...)), count = how many are non-zero.
  When a gradient will be needed, its op also returns, on the CPU, the pairs with a non-zero loss (few, once the
  embeddings are clustered): its backward then reads them instead of recomputing the N x M tiles.
Pairs come from the labels (all pairs, PML's get_all_pairs_indices and self-pair rule) or from `pair_lists(...)`.
The accumulators are differentiable in emb and ref_emb; the counts are not. query_rows=(begin, end) (labels path,
ref_emb None; ops.query_range): only rows [begin, end) of emb are anchors, against all of emb, and the state has
end - begin rows.
"""
from __future__ import annotations

import torch

from . import _loader
from .ops import _check_pair_inputs, _self_ref, query_range

_loader.load()

__all__ = ["pair_lists", "multi_similarity_loss_rows", "contrastive_loss_rows"]


def _csr(rows, cols, n_rows: int, n_refs: int, dedup: bool):
    key = rows.long() * n_refs + cols.long()
    key = torch.unique(key) if dedup else torch.sort(key).values
    row = torch.div(key, n_refs, rounding_mode="floor")
    ptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=key.device)
    ptr[1:] = torch.bincount(row, minlength=n_rows).cumsum(0)
    return ptr, key - row * n_refs, key


def check_index(t, size: int, name: str):
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer tensor")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        raise ValueError(f"{name} has indices outside [0, {size})")


def pair_lists(a1, p, a2, n, n_rows: int, n_refs: int, as_mask: bool, names=("a1", "p", "a2", "n")):
    """(a1, p, a2, n) as the CSR lists of the loss ops: (pos_ptr, pos_cols, neg_ptr, neg_cols).

    as_mask=True reads the pairs as PML's mask-based losses do: duplicates count once, and a pair may not be both
    positive and negative (ValueError). as_mask=False keeps every listed pair (PML's pair-based losses).
    """
    for t, size, name in zip((a1, p, a2, n), (n_rows, n_refs, n_rows, n_refs), names):
        check_index(t, size, name)
    if a1.numel() != p.numel() or a2.numel() != n.numel():
        raise ValueError(f"{names[0]}/{names[1]} and {names[2]}/{names[3]} must pair up (equal lengths)")
    pos_ptr, pos_cols, pos_key = _csr(a1, p, n_rows, n_refs, as_mask)
    neg_ptr, neg_cols, neg_key = _csr(a2, n, n_rows, n_refs, as_mask)
    if as_mask and pos_key.numel() and neg_key.numel() and torch.isin(pos_key, neg_key).any():
        raise ValueError("each pair must be either positive or negative, not both")
    return pos_ptr, pos_cols, neg_ptr, neg_cols


def _lists(lists):
    return (None, None, None, None) if lists is None else tuple(lists)


def multi_similarity_loss_rows(
    emb, labels=None, ref_emb=None, ref_labels=None, lists=None, alpha=2.0, beta=50.0, base=0.5, distance="cosine",
    query_rows=None,
) -> torch.Tensor:
    """Per-row multi-similarity state [N, 4] (module docstring); lists from `pair_lists(..., as_mask=True)`."""
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    # against references that need no gradient (a memory bank), the forward can hand the backward the rows' own
    keep_row_grads = (torch.is_grad_enabled() and emb.requires_grad and ref_emb is not None
                      and not ref_emb.requires_grad)
    rows, _ = torch.ops.slade.multi_similarity_loss_rows(
        emb, labels, ref_emb, ref_labels, *_lists(lists), float(alpha), float(beta), float(base), distance,
        *query_range(query_rows), keep_row_grads,
    )
    return rows


def contrastive_loss_rows(
    emb, labels=None, ref_emb=None, ref_labels=None, lists=None, pos_margin=0.0, neg_margin=1.0, distance="l2",
    query_rows=None,
) -> torch.Tensor:
    """Per-row contrastive state [N, 4] (module docstring); lists from `pair_lists(..., as_mask=False)`."""
    _check_pair_inputs(emb, labels, ref_emb, ref_labels)
    ref_emb, ref_labels = _self_ref(emb, labels, ref_emb, ref_labels)
    keep_active = torch.is_grad_enabled() and (emb.requires_grad or (ref_emb is not None and ref_emb.requires_grad))
    rows, *_ = torch.ops.slade.contrastive_loss_rows(
        emb, labels, ref_emb, ref_labels, *_lists(lists), float(pos_margin), float(neg_margin), distance,
        *query_range(query_rows), keep_active,
    )
    return rows


# ---- fake kernels and autograd: both ops share the signature (emb, labels, ref_emb, ref_labels, 4 lists, params) --

_N_TENSORS = 8  # emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols


def _fake_state(emb, query_begin, query_end):
    """[queries, 4] float64."""
    end = emb.shape[0] if query_end == -1 else query_end
    return emb.new_empty((end - query_begin, 4), dtype=torch.float64)


def _fake_multi_similarity_rows(
    emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, alpha=2.0, beta=50.0, base=0.5,
    distance="cosine", query_begin=0, query_end=-1, keep_row_grads=False,
):
    """The state and the rows' gradients, [N, 2, d] or empty as the labels decide (flattened: a dynamic size)."""
    state = _fake_state(emb, query_begin, query_end)
    compute = torch.float32 if emb.dtype in (torch.float16, torch.bfloat16) else emb.dtype
    size = torch.library.get_ctx().new_dynamic_size() if keep_row_grads and emb.device.type == "cpu" else 0
    return state, emb.new_empty((size,), dtype=compute)


def _fake_contrastive_rows(
    emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, pos_margin=0.0, neg_margin=1.0,
    distance="l2", query_begin=0, query_end=-1, keep_active=False,
):
    """The state and the record of active pairs, whose sizes only the data decide (empty when not recorded)."""
    state = _fake_state(emb, query_begin, query_end)
    if keep_active and emb.device.type == "cpu":
        ctx = torch.library.get_ctx()
        n_ptr, n_pairs = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    else:
        n_ptr = n_pairs = 0
    longs = dict(dtype=torch.int64, device=emb.device)
    return (state, torch.empty(n_ptr, **longs), torch.empty(n_pairs, **longs),
            torch.empty(n_pairs, dtype=torch.float64, device=emb.device))


def _fake_grads(emb, ref_emb, output_mask):
    """(grad_emb, grad_ref_emb); an empty [0] tensor where not asked for (or no ref_emb)."""
    want_emb, want_ref = output_mask
    none = emb.new_empty((0,))
    return (
        torch.empty_like(emb) if want_emb else none,
        torch.empty_like(ref_emb) if ref_emb is not None and want_ref else none.clone(),
    )


def _fake_multi_similarity_backward(
    grad_rows, rows, emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, alpha, beta, base,
    distance, query_begin=0, query_end=-1, output_mask=(True, True), row_grads=None,
):
    return _fake_grads(emb, ref_emb, output_mask)


def _fake_contrastive_backward(
    grad_rows, rows, emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, pos_margin, neg_margin,
    distance, query_begin=0, query_end=-1, output_mask=(True, True), active_ptr=None, active_cols=None,
    active_closeness=None,
):
    return _fake_grads(emb, ref_emb, output_mask)


_FAKE = {
    "multi_similarity_loss_rows": (_fake_multi_similarity_rows, _fake_multi_similarity_backward),
    "contrastive_loss_rows": (_fake_contrastive_rows, _fake_contrastive_backward),
}


# How many of an op's inputs after the tensors its backward op takes too (keep_row_grads / keep_active are not).
_BACKWARD_PARAMS = {"multi_similarity_loss_rows": 6, "contrastive_loss_rows": 5}


def _make_setup(n_params):
    def setup(ctx, inputs, output):
        # The further outputs (the rows' gradients, the record of active pairs) go to the backward op as they are.
        rows, *record = output
        if record:
            ctx.mark_non_differentiable(*record)
        ctx.save_for_backward(*inputs[:_N_TENSORS], rows, *record)
        ctx.params = inputs[_N_TENSORS:_N_TENSORS + n_params]
        ctx.n_inputs = len(inputs)

    return setup


def _make_backward(backward_op):
    def backward(ctx, grad_rows, *_record_grads):
        # Honours ctx.needs_input_grad: the kernel computes only the gradients asked for, the others are None.
        saved = ctx.saved_tensors
        tensors, rows, record = saved[:_N_TENSORS], saved[_N_TENSORS], saved[_N_TENSORS + 1:]
        ref_emb = tensors[2]
        needs = ctx.needs_input_grad
        want_emb, want_ref = bool(needs[0]), len(needs) > 2 and bool(needs[2])
        grad_emb, grad_ref = backward_op(
            grad_rows.contiguous(), rows, *tensors, *ctx.params, [want_emb, want_ref], *record
        )
        return (
            grad_emb if want_emb else None,
            None,
            grad_ref if ref_emb is not None and want_ref else None,
        ) + (None,) * (ctx.n_inputs - 3)

    return backward


for _name in ("multi_similarity_loss_rows", "contrastive_loss_rows"):
    torch.library.register_fake(f"slade::{_name}", _FAKE[_name][0])
    torch.library.register_fake(f"slade::{_name}_backward", _FAKE[_name][1])
    torch.library.register_autograd(
        f"slade::{_name}", _make_backward(getattr(torch.ops.slade, f"{_name}_backward")),
        setup_context=_make_setup(_BACKWARD_PARAMS[_name]),
    )
