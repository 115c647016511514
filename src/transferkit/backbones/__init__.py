"""Pretrained backbones: a catalogue by name (Keras, KerasHub, text), and those Keras lacks."""

from transferkit.backbones.cache import keras_models_dir
from transferkit.backbones.efficientnet_lite import EfficientNetLite0
from transferkit.backbones.hub import load_preset
from transferkit.backbones.loading import cut_model, load_backbone
from transferkit.backbones.registry import (
    BackboneConfig,
    BackboneInfo,
    get_backbone_config,
    list_backbones,
    register,
    weights_available,
)
from transferkit.backbones.text import tokenize

__all__ = [
    "BackboneConfig",
    "BackboneInfo",
    "EfficientNetLite0",
    "cut_model",
    "get_backbone_config",
    "keras_models_dir",
    "list_backbones",
    "load_backbone",
    "load_preset",
    "register",
    "tokenize",
    "weights_available",
]
