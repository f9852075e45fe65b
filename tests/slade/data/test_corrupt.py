"""Unreadable images are skipped, counted and reported; the loader never crashes."""
import warnings

import numpy as np
from torch.utils.data import DataLoader

from slade.data.imageset import ImageSet
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.data.transforms import EvalTransform, TrainTransform
from helpers.images import write_corrupt, write_image


def test_corrupt_and_missing_images_are_skipped_and_reported(tmp_path):
    paths = [write_image(tmp_path / "a.jpg", 0), write_corrupt(tmp_path / "b.jpg"), write_image(tmp_path / "c.png", 1),
             tmp_path / "missing.jpg", write_image(tmp_path / "d.jpg", 2)]
    images = ImageSet(labels=[0, 0, 1, 1, 1], class_names=["x", "y"], paths=[str(p) for p in paths], name="photos")
    loader = DataLoader(ImageDataset(images, TrainTransform(8, 3)), batch_size=5,
                        collate_fn=collate_skipping_unreadable)
    log = SkipLog()
    batch = next(iter(loader))
    log.add(batch["skipped"])
    assert batch["images"].shape == (3, 3, 8, 8)
    assert batch["indices"].tolist() == [0, 2, 4] and batch["labels"].tolist() == [0, 1, 1]
    assert log.counts() == {"photos": 2}
    assert log.paths() == {"photos": sorted([str(paths[1]), str(paths[3])])}
    assert log.readable({"labeled": images}) == {"labeled": 3}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = log.report("teacher")
    assert "teacher: skipped 2 unreadable image(s) in 'photos'" in message
    assert str(paths[1]) in message and str(paths[3]) in message and len(caught) == 1


def test_nothing_skipped_reports_nothing():
    images = ImageSet(labels=[0, 1], class_names=["x", "y"], arrays=np.zeros((2, 10, 10), np.uint8))
    loader = DataLoader(ImageDataset(images, EvalTransform(6, 1, photo=False)), batch_size=2,
                        collate_fn=collate_skipping_unreadable)
    batch = next(iter(loader))
    assert batch["images"].shape == (2, 1, 6, 6) and batch["skipped"] == []
    assert SkipLog().report("teacher") is None


def test_eval_transform_photo_protocol():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8))
    out = EvalTransform(16, 3, photo=True)(img)
    assert out.shape == (3, 16, 16) and 0.0 <= out.min() and out.max() <= 1.0
    assert EvalTransform(16, 1, photo=True)(img).shape == (1, 16, 16)
