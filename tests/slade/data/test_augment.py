"""The self-supervised views: the augmentations keep shape and range, are seeded, and differ between views."""
import pytest
import torch

from slade.data.augment import ViewAugment


def test_views_keep_shape_and_range_and_differ():
    x = torch.zeros(8, 1, 24, 24)
    x[:, :, 6:18, 10:14] = 1.0  # a bar of ink
    aug = ViewAugment()
    v1 = aug(x, torch.Generator().manual_seed(1))
    v2 = aug(x, torch.Generator().manual_seed(2))
    assert v1.shape == x.shape and float(v1.min()) >= 0.0 and float(v1.max()) <= 1.0
    assert not torch.equal(v1, v2) and not torch.equal(v1, x)
    torch.testing.assert_close(v1, aug(x, torch.Generator().manual_seed(1)))


def test_identity_augment_is_identity():
    x = torch.rand(3, 3, 16, 16)
    none = ViewAugment(rotation=0, scale=(1, 1), shift=0, shear=0, stroke_prob=0, contrast=(1, 1), erase_prob=0)
    torch.testing.assert_close(none(x), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        none(torch.rand(16, 16))
