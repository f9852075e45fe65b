"""Backbone + linear embedding head + L2 normalisation, built from the model section of the config."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingNet(nn.Module):
    def __init__(self, backbone: nn.Module, embedding_dim: int = 128):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [B, d], in float32 even under autocast (losses and kNN compare them)."""
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)


def build_backbone(cfg, in_channels: int, image_size: int) -> nn.Module:
    """cfg: config.ModelConfig."""
    if cfg.backbone == "small_cnn":
        from slade.models.small_cnn import SmallCNN

        return SmallCNN(in_channels=in_channels, width=cfg.width)
    if cfg.backbone == "efficientnet_lite0":
        from slade.models.efficientnet import EfficientNetLite0

        return EfficientNetLite0(image_size=image_size, pretrained=cfg.pretrained)
    if cfg.backbone.startswith("torchvision:"):
        from slade.models.torchvision_backbone import TorchvisionBackbone

        return TorchvisionBackbone(cfg.backbone.split(":", 1)[1], cfg.weights, image_size)
    raise ValueError(f"model.backbone must be 'small_cnn', 'efficientnet_lite0' or 'torchvision:<name>', "
                     f"got {cfg.backbone!r}")


def build_model(model_cfg, in_channels: int, image_size: int) -> EmbeddingNet:
    return EmbeddingNet(build_backbone(model_cfg, in_channels, image_size), model_cfg.embedding_dim)
