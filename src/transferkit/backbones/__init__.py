"""Pretrained backbones: a catalogue by name (Keras, KerasHub, text), and those Keras lacks.

The names are imported on first use: reading the catalogue (a name's
`BackboneConfig`, `list_backbones`) imports no Keras; building a backbone does.
"""

from transferkit._lazy import lazy_exports

_EXPORTS = {
    "BackboneConfig": "transferkit.backbones.registry",
    "BackboneInfo": "transferkit.backbones.registry",
    "EfficientNetLite0": "transferkit.backbones.efficientnet_lite",
    "cut_model": "transferkit.backbones.loading",
    "get_backbone_config": "transferkit.backbones.registry",
    "keras_models_dir": "transferkit.backbones.cache",
    "list_backbones": "transferkit.backbones.registry",
    "load_backbone": "transferkit.backbones.loading",
    "load_preset": "transferkit.backbones.hub",
    "register": "transferkit.backbones.registry",
    "tokenize": "transferkit.backbones.text",
    "weights_available": "transferkit.backbones.registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
