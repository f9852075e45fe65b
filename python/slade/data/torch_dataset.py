"""Torch view of an ImageSet. Unreadable images are dropped from their batch and reported, never fatal."""
from __future__ import annotations

import warnings

import torch
from PIL import Image
from torch.utils.data import Dataset

from slade.data.imageset import ImageSet

# What Pillow raises for missing, truncated, undecodable or absurdly large files.
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageDataset(Dataset):
    """Items are (image tensor, label, index) or, for an unreadable image, (None, label, index, (set name, path))."""

    def __init__(self, images: ImageSet, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        label = int(self.images.labels[i])
        try:
            return self.transform(self.images.load(i)), label, i
        except UNREADABLE_ERRORS:
            path = self.images.paths[i] if self.images.paths is not None else f"item {i}"
            return None, label, i, (self.images.name, path)


def collate_skipping_unreadable(items):
    """A batch dict: images [B,...], labels [B], indices [B] of the readable items; skipped = (set name, path) of
    the rest."""
    good = [it for it in items if it[0] is not None]
    return {
        "images": torch.stack([it[0] for it in good]) if good else torch.empty(0),
        "labels": torch.tensor([it[1] for it in good], dtype=torch.int64),
        "indices": torch.tensor([it[2] for it in good], dtype=torch.int64),
        "skipped": [it[3] for it in items if it[0] is None],
    }


class SkipLog:
    """The unreadable images a stage met, by image set (labeled, unlabeled, val, test, ...), with their paths."""

    def __init__(self):
        self._skipped: dict[str, set[str]] = {}

    def add(self, skipped) -> None:
        """skipped: (set name, path) pairs, as a batch carries them."""
        for name, path in skipped:
            self._skipped.setdefault(name, set()).add(path)

    def counts(self) -> dict[str, int]:
        return {name: len(paths) for name, paths in sorted(self._skipped.items())}

    def paths(self) -> dict[str, list[str]]:
        return {name: sorted(paths) for name, paths in sorted(self._skipped.items())}

    def readable(self, sets: dict[str, ImageSet]) -> dict[str, int]:
        """The number of readable images of each set: what was listed, less what could not be read."""
        return {name: len(images) - len(self._skipped.get(images.name, ())) for name, images in sets.items()}

    def report(self, stage: str) -> str | None:
        """Warns with one line per set with skipped images, naming every path; None when nothing was skipped."""
        if not self._skipped:
            return None
        message = "\n".join(f"{stage}: skipped {len(paths)} unreadable image(s) in {name!r}: " + ", ".join(paths)
                            for name, paths in self.paths().items())
        warnings.warn(message, stacklevel=2)
        return message
