"""The class splits every benchmark shares: the first half of the (sorted) classes train, the rest test; and a
class-disjoint validation hold-out taken from the training classes."""
from __future__ import annotations

import numpy as np


def first_half_second_half(class_ids) -> tuple[np.ndarray, np.ndarray]:
    """CUB-200 (1-100 / 101-200) and Cars-196 (1-98 / 99-196) convention, for any sorted list of class ids."""
    ids = np.sort(np.asarray(class_ids))
    half = (len(ids) + 1) // 2
    return ids[:half], ids[half:]


def hold_out_classes(class_ids, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out): a seeded `fraction` of the classes (at least 2 when fraction > 0) for validation."""
    ids = np.asarray(class_ids)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return ids, ids[:0]
    n_val = max(2, round(fraction * len(ids)))
    if n_val > len(ids) - 2:
        raise ValueError(f"val_fraction={fraction} leaves fewer than 2 of the {len(ids)} training classes to train on")
    perm = np.random.default_rng(seed).permutation(len(ids))
    held = np.sort(ids[perm[:n_val]])
    return np.setdiff1d(ids, held), held


def select_split(images, split: str):
    """'train' = first half of the classes, 'test' = second half (relabelled from 0), 'all' = every class."""
    if split == "all":
        return images
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    train, test = first_half_second_half(np.arange(len(images.class_names)))
    return images.with_classes(train if split == "train" else test, name=f"{images.name}-{split}")
