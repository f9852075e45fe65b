"""ImageSet: images (in-memory arrays or files on disk) with integer labels, the common currency of all readers."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

UNLABELED = -1


@dataclass
class ImageSet:
    """`labels[i]` indexes `class_names` (or is UNLABELED). Exactly one of `paths` / `arrays` holds the images.

    `hidden_labels` keeps the true class of items whose labels were withheld (unlabeled roles), for analysis only.
    """

    labels: np.ndarray
    class_names: list[str]
    paths: list[str] | None = None
    arrays: np.ndarray | None = None
    hidden_labels: np.ndarray | None = None
    name: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.paths is None) == (self.arrays is None):
            raise ValueError(f"ImageSet {self.name!r}: give exactly one of paths or arrays")
        n = len(self.paths) if self.paths is not None else len(self.arrays)
        if self.labels.shape != (n,):
            raise ValueError(f"ImageSet {self.name!r}: labels has shape {self.labels.shape}, expected ({n},)")
        if self.hidden_labels is not None:
            self.hidden_labels = np.asarray(self.hidden_labels, dtype=np.int64)
            if self.hidden_labels.shape != (n,):
                raise ValueError(f"ImageSet {self.name!r}: hidden_labels must have shape ({n},)")
        if n and self.labels.max(initial=UNLABELED) >= len(self.class_names):
            raise ValueError(f"ImageSet {self.name!r}: a label exceeds the {len(self.class_names)} class names")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.labels[self.labels != UNLABELED]))

    def load(self, i: int) -> Image.Image:
        """The i-th image, fully decoded. Unreadable files raise (OSError, ValueError, SyntaxError) from Pillow."""
        if self.arrays is not None:
            return Image.fromarray(self.arrays[i])
        with Image.open(self.paths[i]) as img:
            img.load()  # decode now so that truncated files fail here, not later inside a transform
            return img.convert("RGB")

    def subset(self, indices, name: str | None = None) -> "ImageSet":
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            labels=self.labels[idx],
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            arrays=self.arrays[idx] if self.arrays is not None else None,
            hidden_labels=self.hidden_labels[idx] if self.hidden_labels is not None else None,
            name=name or self.name,
            notes=dict(self.notes),
        )

    def with_classes(self, class_ids, name: str | None = None) -> "ImageSet":
        """The items whose label is in class_ids, relabelled 0..len(class_ids)-1 in the given order."""
        class_ids = np.asarray(class_ids, dtype=np.int64)
        remap = np.full(len(self.class_names), UNLABELED, dtype=np.int64)
        remap[class_ids] = np.arange(len(class_ids))
        keep = np.flatnonzero(np.isin(self.labels, class_ids))
        out = self.subset(keep, name)
        out.labels = remap[out.labels]
        out.class_names = [self.class_names[c] for c in class_ids]
        return out

    def withhold_labels(self, name: str | None = None) -> "ImageSet":
        """The same images with labels withheld (kept in hidden_labels)."""
        return replace(
            self, labels=np.full(len(self), UNLABELED, dtype=np.int64), hidden_labels=self.labels.copy(),
            name=name or self.name, notes=dict(self.notes),
        )

