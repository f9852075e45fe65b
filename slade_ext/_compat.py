"""pytorch-metric-learning interop for the drop-in miners and losses: PML stays optional.

- `fused_distance` maps a PML distance object onto the fused kernels' distance name (slade_ext.distances), or None
  when they cannot reproduce it (then the module falls back to PML's own class).
- `pml_twin` builds that PML class, warning once per module instance (FallbackWarning).
- `check_forward_inputs` validates the PML forward arguments with messages naming them.
- `DropInLoss` is the losses' PML forward: PML's twin when the instance fell back, else the instance's own path.
"""
from __future__ import annotations

import copy
import functools
import importlib
import warnings

import torch

from . import distances
from .ops import check_same_dtype_and_device

# PML's own classes by the module that defines them, not the package namespace: a user who adopted the drop-ins by
# patching `pytorch_metric_learning.miners.X = slade_ext.miners.X` must still get PML's X as the fallback (looking
# it up in the package namespace would find our class again and recurse without end).
_PML_DEFINING_MODULES = {
    ("miners", "MultiSimilarityMiner"): "pytorch_metric_learning.miners.multi_similarity_miner",
    ("miners", "BatchHardMiner"): "pytorch_metric_learning.miners.batch_hard_miner",
    ("miners", "PairMarginMiner"): "pytorch_metric_learning.miners.pair_margin_miner",
    ("miners", "TripletMarginMiner"): "pytorch_metric_learning.miners.triplet_margin_miner",
    ("losses", "MultiSimilarityLoss"): "pytorch_metric_learning.losses.multi_similarity_loss",
    ("losses", "ContrastiveLoss"): "pytorch_metric_learning.losses.contrastive_loss",
    ("losses", "NTXentLoss"): "pytorch_metric_learning.losses.ntxent_loss",
    ("losses", "TripletMarginLoss"): "pytorch_metric_learning.losses.triplet_margin_loss",
    ("distances", "CosineSimilarity"): "pytorch_metric_learning.distances.cosine_similarity",
    ("distances", "LpDistance"): "pytorch_metric_learning.distances.lp_distance",
    ("distances", "DotProductSimilarity"): "pytorch_metric_learning.distances.dot_product_similarity",
    ("reducers", "MeanReducer"): "pytorch_metric_learning.reducers.mean_reducer",
    ("reducers", "SumReducer"): "pytorch_metric_learning.reducers.sum_reducer",
    ("reducers", "AvgNonZeroReducer"): "pytorch_metric_learning.reducers.avg_non_zero_reducer",
    ("reducers", "DoNothingReducer"): "pytorch_metric_learning.reducers.do_nothing_reducer",
    ("reducers", "MultipleReducers"): "pytorch_metric_learning.reducers.multiple_reducers",
}


class FallbackWarning(UserWarning):
    """A slade_ext module runs pytorch-metric-learning's implementation because the fused kernels lack an option."""


def pml_available() -> bool:
    return importlib.util.find_spec("pytorch_metric_learning") is not None


@functools.lru_cache(maxsize=None)
def pml_class(module_name: str, class_name: str):
    """PML's own `class_name` (pytorch_metric_learning.<module_name>), resolved once from its defining module.

    Raises RuntimeError when even the defining module now holds a slade_ext class (it was patched there too)."""
    defining = _PML_DEFINING_MODULES.get((module_name, class_name))
    if defining is None:
        raise KeyError(f"no PML class {module_name}.{class_name} is known to slade_ext")
    cls = getattr(importlib.import_module(defining), class_name)
    if getattr(cls, "__module__", "").startswith("slade_ext"):
        raise RuntimeError(
            f"{defining}.{class_name} is slade_ext's class, not PML's: patch pytorch_metric_learning.{module_name}."
            f"{class_name} (the package namespace), not the module that defines it"
        )
    return cls


def is_pml_reducer(reducer, *class_names: str) -> bool:
    """Whether `reducer` is exactly (not a subclass of) one of PML's reducer classes `class_names`."""
    return pml_available() and any(type(reducer) is pml_class("reducers", name) for name in class_names)


def held_reducer(reducer):
    """The reducer as PML's set_reducer holds it: its own deep copy, except DoNothingReducer and MultipleReducers
    (kept as given); None stays None."""
    if reducer is None or is_pml_reducer(reducer, "DoNothingReducer", "MultipleReducers"):
        return reducer
    return copy.deepcopy(reducer)


def sum_reduction(reducer, default: str) -> str | None:
    """"mean", "sum" or "avg_nonzero" when `reducer` is exactly PML's MeanReducer, SumReducer or AvgNonZeroReducer
    (low 0, no high), `default` for None, else None. These need only a sum of the losses and a count (all of them,
    or the non-zero ones), which the fused paths keep; any other reducer needs every loss."""
    if reducer is None:
        return default
    if is_pml_reducer(reducer, "AvgNonZeroReducer") and reducer.low == 0 and reducer.high is None:
        return "avg_nonzero"
    if is_pml_reducer(reducer, "MeanReducer"):
        return "mean"
    if is_pml_reducer(reducer, "SumReducer"):
        return "sum"
    return None


def fused_distance(distance, default: str) -> str | None:
    """The fused kernels' name (slade_ext.distances) of a PML distance object: CosineSimilarity() and
    DotProductSimilarity (normalised or not), LpDistance (normalised or not, p=2, power 1 or 2); `default` for
    None; None for anything else (not fusable: another p or power, a subclass, a user's own distance)."""
    if distance is None:
        return default
    if not pml_available():
        return None
    similarities = (pml_class("distances", "CosineSimilarity"), pml_class("distances", "DotProductSimilarity"))
    if type(distance) in similarities:
        similarity = True
    elif type(distance) is pml_class("distances", "LpDistance"):
        similarity = False
    else:
        return None
    if getattr(distance, "p", None) != 2 or bool(getattr(distance, "is_inverted", None)) != similarity:
        return None
    normalize, power = getattr(distance, "normalize_embeddings", None), getattr(distance, "power", None)
    return distances.name_of(normalize, similarity, power)


def pml_twin(module_name: str, class_name: str, kwargs: dict, reason: str):
    """PML's `class_name` (from pytorch_metric_learning.<module_name>) built with `kwargs`, after one warning."""
    if not pml_available():
        raise ValueError(f"{class_name}: {reason}, which needs pytorch-metric-learning (not installed)")
    warnings.warn(
        f"slade_ext.{module_name}.{class_name}: {reason}; falling back to pytorch-metric-learning's "
        f"implementation (no fused kernel, full N x M memory)",
        FallbackWarning,
        stacklevel=4,  # the user line that built the miner or loss
    )
    return pml_class(module_name, class_name)(**kwargs)


def fused_or_fallback(module_name: str, owner, distance, pml_options: dict, fused_options=()):
    """(fused distance name, None) when the fused kernels cover `owner`'s settings, else (None, PML's twin of
    `owner`, built with owner._pml_args() plus the options, after one warning). `fused_options` name the options
    the fused path honours itself; PML's twin gets them too."""
    fused = fused_distance(distance, owner.default_distance)
    reason = None
    unfused = sorted(set(pml_options) - set(fused_options))
    if unfused:
        reason = f"option(s) {', '.join(unfused)} have no fused kernel"
    elif fused is None:
        reason = (f"distance {distance!r} has no fused kernel (only CosineSimilarity, DotProductSimilarity and "
                  "LpDistance with p=2, power 1 or 2)")
    if reason is None:
        return fused, None
    kwargs = dict(owner._pml_args(), **pml_options)
    if distance is not None:
        kwargs["distance"] = distance
    return fused, pml_twin(module_name, type(owner).__name__, kwargs, reason)


def _check_emb(x, name: str):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor of shape (batch_size, embedding_size), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")


def _check_labels(labels, n: int, name: str, device) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of shape (batch_size,), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but there are {n} embeddings")
    return labels.to(device)


def check_forward_inputs(embeddings, labels, ref_emb, ref_labels, labels_required: bool):
    """Validated (labels, ref_labels) moved to the embeddings' device, PML's way; raises naming the argument."""
    _check_emb(embeddings, "embeddings")
    shared = ref_labels is labels  # keep PML's identity rule (ref_labels is labels) across the device move
    if labels is None:
        if labels_required:
            raise ValueError("labels are required")
    else:
        labels = _check_labels(labels, embeddings.shape[0], "labels", embeddings.device)
    if ref_emb is not None and ref_emb is not embeddings:
        _check_emb(ref_emb, "ref_emb")
        check_same_dtype_and_device(embeddings, "embeddings", ref_emb, "ref_emb")
        if ref_emb.shape[1] != embeddings.shape[1]:
            raise ValueError(f"ref_emb has {ref_emb.shape[1]} features but embeddings have {embeddings.shape[1]}")
        if ref_labels is None and labels_required:
            raise ValueError("ref_labels are required when ref_emb is given")
    if ref_labels is not None and shared:
        ref_labels = labels
        if ref_emb is not None and ref_emb.shape[0] != labels.shape[0]:
            raise ValueError(
                f"ref_labels (the labels object) has {labels.shape[0]} entries but ref_emb has {ref_emb.shape[0]} rows"
            )
    elif ref_labels is not None:
        if ref_emb is None:
            raise ValueError("ref_labels was given without ref_emb")
        ref_labels = _check_labels(ref_labels, ref_emb.shape[0], "ref_labels", embeddings.device)
    return labels, ref_labels


def runs_fused(obj) -> bool:
    """Whether `obj` is one of slade_ext's fused miners or losses that did not fall back to PML's class."""
    fused = getattr(obj, "fused", None)
    return callable(fused) and bool(fused())


class DropInLoss(torch.nn.Module):
    """forward(embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None) as PML's losses: PML's
    twin when `self.fallback` (set by every subclass's __init__) holds one, else `self._own_forward(...)`."""

    def fused(self) -> bool:
        """Whether this instance runs slade_ext's own path (not PML's class through the fallback)."""
        return self.fallback is None

    def _hold_reducer(self, reducer, pml_options: dict) -> dict:
        """Keeps `reducer` as PML's set_reducer would (self.reducer) and returns the options PML's twin gets."""
        self.reducer = held_reducer(reducer)
        return pml_options if reducer is None else dict(pml_options, reducer=reducer)

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        if self.fallback is not None:
            return self.fallback(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        if labels is None and indices_tuple is None:
            raise ValueError("labels and indices_tuple cannot both be None")
        return self._own_forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def _own_forward(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        raise NotImplementedError
