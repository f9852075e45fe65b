"""Backbones (small CNN, EfficientNet-Lite0, local torchvision weights) and the embedding network."""
from slade.models.embedding import EmbeddingNet, build_model

__all__ = ["EmbeddingNet", "build_model"]
