"""Pretrained backbones that `keras.applications` does not ship."""

from transferkit.backbones.efficientnet_lite import EfficientNetLite0

__all__ = ["EfficientNetLite0"]
