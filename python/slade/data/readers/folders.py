"""Folder trees: one folder per class (any depth, e.g. CompCars make/model), or any image folder without labels
(e.g. Fashion-200k as unlabeled data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from slade.data.class_split import select_split
from slade.data.imageset import UNLABELED, ImageSet

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def image_files(root: str) -> list[Path]:
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder {root!r} is not a directory")
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def class_folders(root: str, split: str = "all", class_depth: int = 1) -> ImageSet:
    """Class = the first `class_depth` folder levels below root (CompCars models: 2). Images shallower than that
    have no class and are left out (counted in notes['unclassified'])."""
    if class_depth < 1:
        raise ValueError(f"class_depth must be >= 1, got {class_depth}")
    base = Path(root)
    classified, unclassified = [], 0
    for path in image_files(root):
        parts = path.relative_to(base).parts[:-1]
        if len(parts) < class_depth:
            unclassified += 1
        else:
            classified.append((path, "/".join(parts[:class_depth])))
    names = sorted({c for _, c in classified})
    if not names:
        raise ValueError(f"class_folders: no images {class_depth} folder level(s) below {root!r}")
    index = {c: i for i, c in enumerate(names)}
    full = ImageSet(labels=[index[c] for _, c in classified], class_names=names,
                    paths=[str(p) for p, _ in classified], name=Path(root).name or "folders",
                    notes={"unclassified": unclassified})
    return select_split(full, split)


def unlabeled_folder(root: str) -> ImageSet:
    files = image_files(root)
    if not files:
        raise ValueError(f"unlabeled_folder: no images under {root!r}")
    return ImageSet(labels=np.full(len(files), UNLABELED), class_names=[], paths=[str(p) for p in files],
                    name=Path(root).name or "unlabeled")
