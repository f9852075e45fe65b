"""Any torchvision classification model, with weights from a local file (torchvision would otherwise download them).
torchvision is optional and imported only here."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER_NAMES = ("fc", "classifier", "head", "heads")


def _state_dict(path: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"model.weights {path!r} does not hold a state dict")
    return state


class TorchvisionBackbone(nn.Module):
    def __init__(self, name: str, weights: str, image_size: int):
        super().__init__()
        try:
            import torchvision
        except ImportError as err:
            raise ImportError(f"backbone 'torchvision:{name}' needs torchvision (pip install torchvision)") from err
        if not weights or not Path(weights).is_file():
            raise FileNotFoundError(f"backbone 'torchvision:{name}' needs model.weights, a local weights file; "
                                    f"got {weights!r}")
        try:
            self.net = torchvision.models.get_model(name, weights=None)
        except ValueError as err:
            raise ValueError(f"model.backbone: torchvision has no model {name!r}") from err
        result = self.net.load_state_dict(_state_dict(weights), strict=False)
        missing = [k for k in result.missing_keys if k.split(".")[0] not in CLASSIFIER_NAMES]
        if missing:
            raise ValueError(f"model.weights {weights!r} lacks {len(missing)} weights of {name}, e.g. {missing[:3]}")
        for attr in CLASSIFIER_NAMES:
            if isinstance(getattr(self.net, attr, None), nn.Module):
                setattr(self.net, attr, nn.Identity())
                break
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            self.out_features = self.net.eval()(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x - self.mean) / self.std).flatten(1)
