"""CUB-200-2011 and NABirds: images.txt (id path), image_class_labels.txt (id class), optional classes.txt
(class name), images under images/. Metric learning splits by class, ignoring train_test_split.txt."""
from __future__ import annotations

from pathlib import Path

from slade.data.class_split import select_split
from slade.data.imageset import ImageSet


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """Lines 'key value' (value may hold spaces); blank lines ignored."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent} (expected the CUB/NABirds layout)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            if not value:
                raise ValueError(f"{path}:{number}: expected 'id value', got {line!r}")
            pairs.append((key, value.strip()))
    return pairs


def _dataset_root(root: str, nested: str) -> Path:
    base = Path(root)
    return base / nested if not (base / "images.txt").is_file() and (base / nested / "images.txt").is_file() else base


def read_cub_layout(root: str, name: str, nested: str) -> ImageSet:
    """Every listed image; labels index the sorted class ids that occur in image_class_labels.txt."""
    base = _dataset_root(root, nested)
    paths = dict(_read_pairs(base / "images.txt"))
    image_class = _read_pairs(base / "image_class_labels.txt")
    names = dict(_read_pairs(base / "classes.txt")) if (base / "classes.txt").is_file() else {}
    missing = [i for i, _ in image_class if i not in paths]
    if missing:
        raise ValueError(f"{name}: image ids {missing[:3]} are in image_class_labels.txt but not in images.txt")
    class_ids = sorted({c for _, c in image_class}, key=lambda c: (int(c) if c.isdigit() else c))
    index = {c: i for i, c in enumerate(class_ids)}
    return ImageSet(
        labels=[index[c] for _, c in image_class],
        class_names=[names.get(c, c) for c in class_ids],
        paths=[str(base / "images" / paths[i]) for i, _ in image_class],
        name=name,
    )


def cub200(root: str, split: str = "train") -> ImageSet:
    """Classes 1-100 train, 101-200 test."""
    return select_split(read_cub_layout(root, "cub200", "CUB_200_2011"), split)


def nabirds(root: str, split: str = "all") -> ImageSet:
    """All 555 leaf classes by default: the paper uses NABirds as unlabeled data beside CUB."""
    return select_split(read_cub_layout(root, "nabirds", "nabirds"), split)
