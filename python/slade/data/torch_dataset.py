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
    """Items are (image tensor or None when unreadable, label, index)."""

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
            return None, label, i


def collate_skipping_unreadable(items):
    """A batch dict: images [B,...], labels [B], indices [B] of the readable items, skipped = indices of the rest."""
    good = [it for it in items if it[0] is not None]
    skipped = [it[2] for it in items if it[0] is None]
    if good:
        images = torch.stack([it[0] for it in good])
    else:
        images = torch.empty(0)
    return {
        "images": images,
        "labels": torch.tensor([it[1] for it in good], dtype=torch.int64),
        "indices": torch.tensor([it[2] for it in good], dtype=torch.int64),
        "skipped": skipped,
    }


class SkipLog:
    """Counts the unreadable images a run met, per role (labeled, test, ...), and reports them by path."""

    def __init__(self):
        self._skipped: dict[str, set[int]] = {}

    def add(self, role: str, indices) -> None:
        if indices:
            self._skipped.setdefault(role, set()).update(int(i) for i in indices)

    def counts(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self._skipped.items()}

    def report(self, sets: dict[str, ImageSet]) -> str | None:
        """Warns with one line per role with skipped images (a few example paths); None when nothing was skipped."""
        if not self._skipped:
            return None
        lines = []
        for name, idx in sorted(self._skipped.items()):
            images = sets.get(name)
            examples = ""
            if images is not None and images.paths is not None:
                examples = ": " + ", ".join(images.paths[i] for i in sorted(idx)[:3]) + (" ..." if len(idx) > 3 else "")
            lines.append(f"skipped {len(idx)} unreadable image(s) in {name!r}{examples}")
        message = "\n".join(lines)
        warnings.warn(message, stacklevel=2)
        return message
