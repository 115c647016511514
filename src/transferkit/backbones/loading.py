"""Building a backbone by catalogue name, or cutting one from a saved model."""

import difflib
import os

import keras

from transferkit._compat import raised_in_get_file
from transferkit.backbones import cache
from transferkit.backbones.preprocessing import add_preprocessing
from transferkit.backbones.registry import get_backbone_config
from transferkit.backbones.shapes import as_shape
from transferkit.errors import TransferkitError


def load_backbone(source, weights="imagenet", input_shape=None, cut_at=None, name=None):
    """Returns a pretrained backbone: raw RGB images in, feature map out.

    For a catalogue name the model is the family's `include_top=False`
    network with its ImageNet preprocessing inside, so it takes RGB images
    with values in [0, 255] as they are (no `preprocess_input` to call).

    ImageNet weights of `keras.applications` families go through Keras' own
    cache, `keras_models_dir()` (`$KERAS_HOME/models`, default
    `~/.keras/models`): downloaded on first use, read from there afterwards,
    so a machine without internet works once the file is there.

    Args:
        source: a catalogue name (`"resnet50"`; see `list_backbones()`), a
            `keras.Model`, the path of a `.keras` file, or a KerasHub preset
            folder (what `backbone.save_to_preset(folder)` writes; see
            `transferkit.backbones.hub.load_preset`).
        weights: for catalogue names: `"imagenet"` (default; for KerasHub
            and text entries, their pretrained weights), `None` for random
            initialization, or the path of a weights file saved from the same
            backbone (or, for KerasHub entries, of a preset folder). Ignored
            for models and files.
        input_shape: `(height, width, 3)`; `None` dimensions allowed.
            Defaults to the family's default size (224 x 224 for most), or
            the saved model's own input shape.
        cut_at: optional layer name: the backbone ends at that layer's
            output (`"conv4_block6_out"`, or the last layer before a saved
            model's classifier). Defaults to `None` (the whole model).
        name: the model's name. Defaults to the catalogue name, or the
            model's own name.

    Returns:
        A functional `keras.Model`.

    Raises:
        TransferkitError: unknown name, input too small or not RGB, missing
            layer or file, or ImageNet weights neither cached nor
            downloadable (the message names the file and the folder).

    Example:

    >>> features = load_backbone("mobilenet_v2", input_shape=(160, 160, 3))  # doctest: +SKIP
    >>> trunk = load_backbone("runs/model.keras", cut_at="global_pool")  # doctest: +SKIP
    """
    if isinstance(source, keras.Model):
        model = source
    elif isinstance(source, (str, os.PathLike)) and _looks_like_path(os.fspath(source)):
        if _is_preset_folder(os.fspath(source)):
            from transferkit.backbones.hub import load_preset

            model = load_preset(source, input_shape=input_shape)
            input_shape = None  # applied already
        else:
            from transferkit.saving import load_model

            model = load_model(source, compile=False)
    elif isinstance(source, str):
        model = _from_catalogue(source, weights, input_shape)
        input_shape = None  # applied already
    else:
        raise TransferkitError(
            f"A backbone is a catalogue name, a keras.Model or a .keras path; got "
            f"{type(source).__name__}."
        )
    _check_single_image_input(model, input_shape)
    if cut_at is not None:
        model = cut_model(model, cut_at)
    if name is not None and name != model.name:
        model = _renamed(model, name)
    return model


def cut_model(model, layer_name):
    """Returns the part of `model` from its input to `layer_name`'s output.

    The new model shares its layers (and weights) with `model`.

    Args:
        model: a functional or sequential `keras.Model`.
        layer_name: the name of one of its top-level layers.

    Example:

    >>> trunk = cut_model(classifier, "global_pool")  # doctest: +SKIP
    """
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        close = _closest(layer_name, names)
        shown = ", ".join(names[-8:])
        raise TransferkitError(
            f"{model.name!r} has no layer {layer_name!r}{close}; its last layers are: {shown}."
        )
    try:
        output = model.get_layer(layer_name).output
        return keras.Model(model.inputs[0], output, name=model.name)
    except (AttributeError, ValueError) as e:
        raise TransferkitError(
            f"Cannot cut {model.name!r} at {layer_name!r}: {_first_line(e)}"
        ) from None


def _from_catalogue(name, weights, input_shape):
    config = get_backbone_config(name)
    if config.modality == "image":
        input_shape = _checked_input_shape(config, input_shape)
    if config.loader is not None:
        # KerasHub presets and text backbones: their weights are a folder or a
        # package, not one Keras file; the loader checks and reads them.
        return config.loader(weights=weights, input_shape=input_shape, name=config.name)
    if weights is not None and weights != "imagenet":
        if not isinstance(weights, (str, os.PathLike)):
            raise TransferkitError(
                f"weights must be 'imagenet', None or a weights file path; got {weights!r}."
            )
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise TransferkitError(f"No such weights file: {weights}; check the path.")
    kwargs = dict(include_top=False, weights=weights, input_shape=input_shape)
    if config.preprocessing != "inside":
        inputs = keras.Input(input_shape, name="image")
        # The family's network is built on the preprocessed tensor, so that
        # the preprocessing and the network are one flat model: its layers
        # keep their Keras names, and weights files load as Keras wrote them
        # (the preprocessing pieces have no weights).
        kwargs["input_tensor"] = add_preprocessing(inputs, config.preprocessing)
    try:
        model = config.builder(**kwargs)
    except Exception as e:
        # Only a failure in Keras' download, not an unrelated error while
        # building the model, is reported as a download problem.
        if weights == "imagenet" and raised_in_get_file(e):
            filename = config.weights_filename(input_shape)
            raise TransferkitError(
                f"Could not download the ImageNet weights of {config.name} "
                f"({_first_line(e)}). Offline, put {filename} in "
                f"{cache.keras_models_dir()} and retry, or pass weights=None."
            ) from e
        if weights not in (None, "imagenet"):
            raise TransferkitError(
                f"Could not load the weights file {weights} into {config.name} "
                f"({_first_line(e)}); give weights saved from {config.name} without its top "
                "(include_top=False), or weights=None."
            ) from e
        raise
    # Built under their default names (some families name their weights file
    # after the model), renamed now.
    return _renamed(model, config.name)


def _checked_input_shape(config, input_shape):
    channels_first = keras.config.image_data_format() == "channels_first"
    if input_shape is None:
        size = config.default_size
        return (3, size, size) if channels_first else (size, size, 3)
    input_shape = as_shape(input_shape)
    if len(input_shape) != 3:
        raise TransferkitError(
            f"input_shape must be (height, width, channels), without the batch axis; "
            f"got {input_shape}."
        )
    channels = input_shape[0] if channels_first else input_shape[-1]
    spatial = input_shape[1:] if channels_first else input_shape[:2]
    if channels != 3:
        raise TransferkitError(
            f"{config.name} takes RGB images (3 channels); got input_shape={input_shape}. "
            "Convert the images to RGB (repeat a gray channel three times)."
        )
    if any(d is not None and d < config.min_size for d in spatial):
        raise TransferkitError(
            f"{config.name} needs images of at least {config.min_size}x{config.min_size} "
            f"pixels; got input_shape={input_shape}. Resize the images (its default is "
            f"{config.default_size}) or pick another backbone."
        )
    return input_shape


def _check_single_image_input(model, input_shape):
    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise TransferkitError(
            f"Backbone {model.name!r} must be a functional or sequential model with one "
            "image input."
        )
    if input_shape is None:
        return
    own = tuple(model.inputs[0].shape[1:])
    wanted = tuple(input_shape)
    if len(own) != len(wanted) or any(
        a is not None and b is not None and a != b for a, b in zip(own, wanted)
    ):
        raise TransferkitError(
            f"Backbone {model.name!r} takes inputs of shape {own}, not {wanted}; "
            "leave input_shape out or resize the images."
        )


def _renamed(model, name):
    # A new functional model over the same layers: Keras models have no
    # supported way to change their name once built.
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    return keras.Model(model.inputs[0], outputs, name=name)


def _is_preset_folder(path):
    # What `save_to_preset` writes, and Hugging Face model folders alike.
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def _looks_like_path(text):
    return text.endswith(".keras") or os.sep in text or os.path.exists(text)


def _closest(name, names):
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
