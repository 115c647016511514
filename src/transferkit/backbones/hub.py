"""KerasHub presets: catalogue entries, and preset folders as backbones.

A KerasHub preset is a folder: the backbone's `config.json`, its weights
(`model.weights.h5`) and its preprocessing (`image_converter.json` for
images, a tokenizer for text). The catalogue's KerasHub entries name presets
that KerasHub downloads from Kaggle once, into the KaggleHub cache
(`$KAGGLEHUB_CACHE`, default `~/.cache/kagglehub`), and reads from there
afterwards, offline too. A folder written by `backbone.save_to_preset(folder)`
(plus, for images, `converter.save_to_preset(folder)`) loads by its path, and
so does a Hugging Face model folder that KerasHub converts (BERT and others).

The backbone comes out like every catalogue entry: one flat functional model
taking raw [0, 255] RGB images. The preset's `ImageConverter` scale and
offset become a built-in `Rescaling` layer named "preprocessing" (its resizing
is left out: the model takes images of its input shape, as the others do),
followed by the KerasHub network's own layers, inlined rather than nested and
sharing its weights. So the layers keep their KerasHub names
(`stack3_block1_out`) for `cut_at`, blocks, freezing and `regularize`, and a
saved `.keras` file of a ResNet, DenseNet or VGG preset holds built-in Keras
layers only.

KerasHub is optional (`pip install "transferkit[hub]"`): it is imported when a
preset is loaded, never to list the catalogue, whose KerasHub entries then
show their weights as not available.
"""

import importlib.util
import os

# Registered before these entries, whichever module is imported first, so
# that the catalogue lists the Keras families first.
from transferkit.backbones import applications  # noqa: F401
from transferkit.backbones.registry import BackboneConfig, register
from transferkit.backbones.shapes import as_shape, checked_sequence_length
from transferkit.errors import TransferkitError

INSTALL_HINT = "pip install 'transferkit[hub]' (or pip install keras-hub)"
KAGGLE = "kaggle://"
# What an image preset needs offline (`from_preset` reads no other file).
IMAGE_PRESET_FILES = ("config.json", "model.weights.h5", "image_converter.json")


def load_preset(preset, *, load_weights=True, input_shape=None, name=None):
    """Returns a backbone from a KerasHub preset: raw images (or token ids) in.

    Image presets give a flat functional model: RGB images in [0, 255], the
    preset's scaling inside (a `Rescaling` layer named `"preprocessing"`),
    then the network's layers. Text presets (a backbone with `token_ids`
    inputs, e.g. BERT) give a model from token ids to the mean of the token
    vectors (`sentence_model`); `transferkit.backbones.text.tokenize(texts,
    preset)` makes the ids.

    Args:
        preset: a preset folder (what `save_to_preset` writes, or a Hugging
            Face model folder), or any preset KerasHub's `from_preset` takes:
            a KerasHub preset name, `"kaggle://owner/model/keras/variant/N"`,
            `"hf://owner/model"` (these download once, then are cached).
        load_weights: bool, whether to load the preset's weights; `False`
            gives the architecture with random weights. Defaults to `True`.
        input_shape: images: `(height, width, 3)`, defaulting to the
            converter's image size, else `(None, None, 3)`; text:
            `(sequence_length,)`, defaulting to `(256,)`.
        name: the model's name. Defaults to the KerasHub backbone's name.

    Returns:
        A functional `keras.Model`.

    Raises:
        TransferkitError: KerasHub missing, a preset that cannot be read or
            downloaded (one line naming what is missing), or a bad shape.

    Example:

    >>> backbone.save_to_preset("my_preset")  # doctest: +SKIP
    >>> converter.save_to_preset("my_preset")  # doctest: +SKIP
    >>> features = load_preset("my_preset", input_shape=(160, 160, 3))  # doctest: +SKIP
    """
    source = os.fspath(preset)
    return load_source(source, source, load_weights, input_shape, name)


def is_preset_folder(path):
    """Whether `path` is a folder holding a preset's (or Hugging Face) `config.json`."""
    path = os.fspath(path)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def import_keras_hub(what):
    """Returns the `keras_hub` module, or raises a one-line error saying how to get it."""
    try:
        import keras_hub
    except ImportError:
        raise TransferkitError(
            f"{what} needs KerasHub, which is not installed: {INSTALL_HINT}."
        ) from None
    return keras_hub


def inline(model, inputs):
    """Calls `model`'s layers on `inputs` one by one: its outputs, not nested.

    Calling a functional model on tensors nests it as one layer; running its
    graph layer by layer instead puts its layers (the same objects, so the
    same weights) into the calling model, under their own names.

    Args:
        model: a functional `keras.Model`.
        inputs: symbolic tensors, one per `model.inputs`, in that order.

    Example:

    >>> features = keras.Model(images, inline(backbone, [images]))  # doctest: +SKIP
    """
    from transferkit._compat import run_graph  # imports Keras: not while listing

    return run_graph(model, inputs)


def sentence_model(backbone, sequence_length, pad_id, name):
    """A model from token ids to mean-pooled token vectors, over a KerasHub text backbone.

    Args:
        backbone: a KerasHub backbone with a `token_ids` input, optional
            `padding_mask` and `segment_ids` inputs, and a `sequence_output`.
        sequence_length: int or `None`, the token axis of the input.
        pad_id: the padding token id; the mask is `token_ids != pad_id`.
        name: the model's name.

    Example:

    >>> bert = keras_hub.models.BertBackbone.from_preset(folder)  # doctest: +SKIP
    >>> sentences = sentence_model(bert, 128, pad_id=0, name="bert")  # doctest: +SKIP
    """
    import keras
    from keras import ops

    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    mask = ops.cast(ops.not_equal(token_ids, pad_id), "int32")
    # One sentence per input: segment 0 throughout.
    feeds = {"token_ids": token_ids, "padding_mask": mask, "segment_ids": ops.zeros_like(token_ids)}
    names = [t.name for t in backbone.inputs]
    if "token_ids" not in names or not set(names) <= set(feeds):
        raise TransferkitError(
            f"{type(backbone).__name__} takes inputs {names}; transferkit's text models take "
            "BERT-like backbones (token_ids, padding_mask, optional segment_ids)."
        )
    outputs = inline(backbone, [feeds[n] for n in names])
    if not isinstance(outputs, dict) or "sequence_output" not in outputs:
        raise TransferkitError(
            f"{type(backbone).__name__} has no sequence_output to pool; pick a BERT-like backbone."
        )
    # The pooled [CLS] output (BERT's `pooled_dense`) is left out: nothing
    # uses it, and its weights would get no gradient.
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_pool")(
        outputs["sequence_output"], mask=mask
    )
    return keras.Model(token_ids, pooled, name=name)


def first_line(error):
    """The first line of an exception's message, or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_source(source, label, load_weights, input_shape, name, weights_file=None):
    """`load_preset`, as the catalogue's loaders call it.

    `label` names the preset in error messages (a catalogue name rather than a
    Kaggle handle), and `weights_file`, a `.weights.h5` file saved from the
    same backbone, replaces the preset's weights.
    """
    keras_hub = import_keras_hub(f"The KerasHub preset {label}")
    backbone = read_preset(label, source, lambda: keras_hub.models.Backbone.from_preset(
        source, load_weights=load_weights))
    name = name or backbone.name
    if "token_ids" in [t.name for t in backbone.inputs]:
        tokenizer = read_preset(
            label, source, lambda: keras_hub.models.Tokenizer.from_preset(source))
        sequence_length = checked_sequence_length(label, input_shape, backbone)
        model = sentence_model(backbone, sequence_length, tokenizer.pad_token_id or 0, name)
    else:
        converter = read_preset(
            label, source, lambda: keras_hub.layers.ImageConverter.from_preset(source))
        model = _image_model(label, backbone, converter, input_shape, name)
    if weights_file is not None:
        load_weights_file(model, weights_file)
    return model


def _image_model(label, backbone, converter, input_shape, name):
    import keras

    if len(backbone.inputs) != 1 or len(backbone.outputs) != 1:
        raise TransferkitError(
            f"{label}: {type(backbone).__name__} is not an image backbone with one input and "
            "one output; transferkit takes image and BERT-like text presets."
        )
    inputs = keras.Input(_image_shape(label, input_shape, converter, backbone), name="image")
    x = _rescaling(converter)(inputs)
    return keras.Model(inputs, inline(backbone, [x]), name=name)


def _image_shape(label, input_shape, converter, backbone):
    import keras

    channels_first = keras.config.image_data_format() == "channels_first"
    if input_shape is None:
        own = tuple(backbone.inputs[0].shape[1:])
        size = converter.image_size
        if size is None:
            return own
        return (own[0], *size) if channels_first else (*size, own[-1])
    input_shape = as_shape(input_shape)
    if len(input_shape) != 3 or input_shape[0 if channels_first else -1] != 3:
        raise TransferkitError(
            f"{label} takes RGB images: input_shape must be (height, width, 3); "
            f"got {input_shape}."
        )
    return input_shape


def _rescaling(converter):
    """The converter's `x * scale + offset` as a built-in layer (identity if unset)."""
    import keras
    import numpy as np

    def per_channel(value, default):
        if value is None:
            return default
        if np.ndim(value) == 0:
            return float(value)
        # Per-channel values broadcast along the channel axis.
        channels_first = converter.data_format == "channels_first"
        shape = (-1, 1, 1) if channels_first else (-1,)
        return np.reshape(np.asarray(value, "float64"), shape).tolist()

    return keras.layers.Rescaling(
        scale=per_channel(converter.scale, 1.0),
        offset=per_channel(converter.offset, 0.0),
        name="preprocessing",
    )


def load_weights_file(model, path):
    """Loads a `.weights.h5` file saved from the same backbone, with a clear error."""
    try:
        model.load_weights(path)
    except Exception as e:  # Keras raises several types for a mismatching file.
        raise TransferkitError(
            f"Could not load {path} into {model.name}: {first_line(e)} (the file must be "
            "saved from the same backbone with save_weights)."
        ) from e


def read_preset(label, source, load):
    """Runs `load()`, a KerasHub `from_preset` call, turning its failures into one line."""
    try:
        return load()
    except TransferkitError:
        raise
    except Exception as e:  # Kaggle, Hugging Face, files and configs raise many types.
        from transferkit._compat import raised_in_preset_download

        if raised_in_preset_download(e):
            raise TransferkitError(_download_message(label, source, e)) from e
        raise TransferkitError(
            f"Could not read the KerasHub preset {label}: {first_line(e)}"
        ) from e


def _download_message(label, source, error):
    where = ""
    if source.startswith(KAGGLE):
        cached = _kaggle_cache_path(source[len(KAGGLE):])
        if cached:
            where = f" into {cached}"
    return (
        f"Could not download the KerasHub preset {label} ({first_line(error)}). Offline, "
        f"copy its files ({', '.join(IMAGE_PRESET_FILES)}){where}, or pass a preset folder "
        "(weights=FOLDER, or load_backbone(FOLDER))."
    )


def _kaggle_cache_path(handle):
    """Where KaggleHub keeps the files of a versioned model handle, or `None`."""
    from transferkit._compat import kaggle_cached_path

    try:
        return kaggle_cached_path(handle)
    except Exception:  # kagglehub missing, or its internals moved (tests/test_compat.py).
        return None


def preset_cached(handle, files=IMAGE_PRESET_FILES):
    """Whether KaggleHub holds every one of `files` of `handle`, completely downloaded."""
    if any(importlib.util.find_spec(m) is None for m in ("keras_hub", "kagglehub")):
        return False
    from transferkit._compat import kaggle_files_cached

    try:
        return kaggle_files_cached(handle, files)
    except Exception:  # kagglehub's internals moved (tests/test_compat.py): say "download".
        return False


def _catalogue_loader(handle):
    """`BackboneConfig.loader` for the KerasHub preset at a Kaggle handle."""

    def load(weights, input_shape, name):
        source = KAGGLE + handle
        if weights == "imagenet":
            return load_source(source, name, True, input_shape, name)
        if weights is None:
            return load_source(source, name, False, input_shape, name)
        if not isinstance(weights, (str, os.PathLike)):
            raise TransferkitError(
                f"weights must be 'imagenet', None, a preset folder or a weights file path; "
                f"got {weights!r}."
            )
        path = os.fspath(weights)
        if is_preset_folder(path):
            return load_source(path, path, True, input_shape, name)
        if os.path.isfile(path):
            return load_source(source, name, False, input_shape, name, weights_file=path)
        raise TransferkitError(f"No such weights file or preset folder: {path}; check the path.")

    return load


def _blocks(template, first, last):
    return tuple(template.format(i) for i in range(first, last + 1))


# name, Kaggle handle (KerasHub 0.32's), parameters (KerasHub's own count, which
# tests/test_hub.py checks, with the blocks, against the built architecture).
_PRESETS = (
    ("resnet_18_imagenet", "keras/resnetv1/keras/resnet_18_imagenet/3", 11_186_112,
     _blocks("stack{}", 0, 3)),
    ("resnet_50_imagenet", "keras/resnetv1/keras/resnet_50_imagenet/3", 23_561_152,
     _blocks("stack{}", 0, 3)),
    ("densenet_121_imagenet", "keras/densenet/keras/densenet_121_imagenet/3", 7_037_504,
     _blocks("stack{}", 1, 4)),
    ("vgg_16_imagenet", "keras/vgg/keras/vgg_16_imagenet/3", 14_714_688,
     _blocks("block{}", 1, 5)),
)

# Kaggle handles by catalogue name, for tests and for finding the cache.
KAGGLE_HANDLES = {}

for _name, _handle, _parameters, _block_names in _PRESETS:
    KAGGLE_HANDLES[_name] = _handle
    register(
        BackboneConfig(
            name=_name,
            builder=None,
            default_size=224,
            min_size=32,
            preprocessing="inside",
            preprocess_input=None,
            blocks=_block_names,
            parameters=_parameters,
            weights_check=lambda handle=_handle: preset_cached(handle),
            loader=_catalogue_loader(_handle),
        )
    )
