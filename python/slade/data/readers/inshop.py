"""In-shop Clothes Retrieval: list_eval_partition.txt (count line, header line, then 'image_name item_id status')
with status train / query / gallery. Query and gallery share one label space (item ids)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from slade.data.imageset import ImageSet

SPLITS = ("train", "query", "gallery")


def _locate(root: Path) -> tuple[Path, Path]:
    """(partition file, image base directory) in the flat or the original (Eval/, Img/) layout."""
    for listing in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"):
        if listing.is_file():
            images = root / "Img" if (root / "Img").is_dir() else root
            return listing, images
    raise FileNotFoundError(f"inshop: no list_eval_partition.txt in {root} or {root / 'Eval'}")


def _rows(listing: Path) -> list[tuple[str, str, str]]:
    lines = listing.read_text(encoding="utf-8").splitlines()
    rows = [tuple(line.split()) for line in lines[2:] if line.strip()]
    bad = [r for r in rows if len(r) != 3 or r[2] not in SPLITS]
    if bad:
        raise ValueError(f"{listing}: malformed rows such as {bad[0]}")
    declared = lines[0].strip() if lines else ""
    if declared.isdigit() and int(declared) != len(rows):
        raise ValueError(f"{listing}: header says {declared} images, file lists {len(rows)}")
    return rows


def inshop(root: str, split: str = "train") -> ImageSet:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    listing, base = _locate(Path(root))
    rows = _rows(listing)
    # Query and gallery number their items over the same set, so that equal labels mean the same item.
    space = {"train"} if split == "train" else {"query", "gallery"}
    items = sorted({item for _, item, status in rows if status in space})
    index = {item: i for i, item in enumerate(items)}
    chosen = [(path, item) for path, item, status in rows if status == split]
    return ImageSet(
        labels=np.array([index[item] for _, item in chosen], dtype=np.int64),
        class_names=items,
        paths=[str(base / path) for path, _ in chosen],
        name=f"inshop-{split}",
    )
