"""Cars-196 from cars_annos.mat (scipy.io): classes 1-98 train, 99-196 test."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from slade.data.class_split import select_split
from slade.data.imageset import ImageSet


def cars196(root: str, split: str = "train") -> ImageSet:
    from scipy.io import loadmat

    base = Path(root)
    annos = base / "cars_annos.mat"
    if not annos.is_file():
        raise FileNotFoundError(f"cars196: no cars_annos.mat in {root}")
    mat = loadmat(str(annos), squeeze_me=True, struct_as_record=False)
    records = np.atleast_1d(mat["annotations"])
    classes = np.array([int(r.__dict__["class"]) for r in records])  # 'class' is a Python keyword
    names = [str(n) for n in np.atleast_1d(mat.get("class_names", []))]
    class_ids = np.unique(classes)
    if len(names) < class_ids.max():
        names = [str(c) for c in range(1, class_ids.max() + 1)]
    full = ImageSet(
        labels=np.searchsorted(class_ids, classes),
        class_names=[names[c - 1] for c in class_ids],
        paths=[str(base / str(r.relative_im_path)) for r in records],
        name="cars196",
    )
    return select_split(full, split)
