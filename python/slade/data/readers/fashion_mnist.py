"""Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files, gzipped or not)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from slade.data.imageset import ImageSet

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST format): magic 0x0000 + dtype code 0x08 (uint8) + ndim, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: holds {data.size} values, its header says {tuple(dims)}")
    return data.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"fashion-mnist: {stem}[.gz] not in {root}; install it with: sudo apt-get install "
                            "dataset-fashion-mnist (or pass its directory as root)")


def fashion_mnist(split: str, root: str | None = None) -> ImageSet:
    """split: 'train' (60,000) or 'test' (10,000), 28x28 grey, labels 0-9."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    base = Path(root or DEBIAN_DIR)
    images = read_idx(_find(base, _FILES[split][0]))
    labels = read_idx(_find(base, _FILES[split][1]))
    if len(images) != len(labels):
        raise ValueError(f"fashion-mnist {split}: {len(images)} images but {len(labels)} labels")
    return ImageSet(labels=labels.astype(np.int64), class_names=list(CLASS_NAMES), arrays=images,
                    name=f"fashion-mnist-{split}")
