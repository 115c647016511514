"""`build`: a pretrained backbone plus a new classification head, in one call."""

import numbers
import re
import warnings

import keras

from transferkit.backbones.loading import load_backbone
from transferkit.errors import TransferkitError
from transferkit.models.precision import dtype_policy, is_mixed, policy_name
from transferkit.regularizers.penalties import get_penalty

# The nested backbone's name in every model `build` makes:
# `model.get_layer(BACKBONE)` is the backbone, and `regularize(...,
# layers="backbone/conv5_.*")` addresses its layers.
BACKBONE = "backbone"
HEAD = "head"

# head -> (output activation, smallest num_classes)
_HEADS = {"softmax": ("softmax", 2), "sigmoid": ("sigmoid", 1), "linear": (None, 1),
          "binary": ("sigmoid", 2)}
_POOLING = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def build(
    backbone,
    num_classes,
    *,
    output="softmax",
    weights="imagenet",
    input_shape=None,
    cut_at=None,
    dropout=0.0,
    pooling="avg",
    kernel=None,
    bias=None,
    activity=None,
    augmentation=None,
    name=None,
    head=None,
    precision=None,
):
    """Builds an image classifier: raw images -> backbone -> pooling -> head.

    The model is functional: its input takes RGB images in [0, 255] (the
    backbone's preprocessing is inside it), the backbone is a nested model
    named `"backbone"` (`model.get_layer("backbone")`, e.g. to freeze it),
    followed by global pooling, optional dropout and a `Dense` layer named
    `"head"`. It saves to `.keras` and reloads with
    `keras.saving.load_model` in safe mode.

    Args:
        backbone: a catalogue name (`"resnet50"`; see `list_backbones()`),
            a `keras.Model`, or the path of a `.keras` file.
        num_classes: int, the number of classes.
        output: what the head (the Dense layer named `"head"`) outputs:
            `"softmax"` (default; one of `num_classes >= 2` classes),
            `"sigmoid"` (independent labels), `"linear"` (logits or
            regression outputs), or `"binary"` (`num_classes=2`: one sigmoid
            unit, the probability of class 1).
        weights: backbone weights for catalogue names: `"imagenet"`
            (default), `None`, or a weights file path.
        input_shape: `(height, width, 3)`. Defaults to the backbone's
            default size, or a given model's own input shape.
        cut_at: optional layer name where the backbone ends (for models and
            `.keras` files, e.g. the layer before their old classifier).
            Defaults to `None`.
        dropout: float in [0, 1), dropout rate before the head. Defaults to
            `0.0` (no dropout layer).
        pooling: `"avg"` (default) or `"max"` global pooling of the feature
            map; unused when the backbone already outputs vectors.
        kernel: optional penalty for every kernel (backbone and head), a
            `keras.regularizers` object or a spec such as `"l2:1e-4"`,
            applied with `transferkit.regularize`. Defaults to `None`.
        bias: optional penalty for every bias, same forms. Defaults to `None`.
        activity: optional penalty for layer outputs, same forms. Defaults to
            `None`.
        augmentation: optional layer applied to the images before the
            backbone, active in training only, e.g.
            `transferkit.data.get_augmentation("default")`. Defaults to
            `None`.
        name: the model's name. Defaults to `"<catalogue name>_classifier"`,
            or `"classifier"`.
        head: the former name of `output` (deprecated; `train`'s `head` is
            the classifier, a different thing).
        precision: `"float32"`, `"mixed"` (the backbone computes in
            bfloat16 on a CPU, float16 on a GPU; pooling, dropout and head
            in float32; see `transferkit.models.precision`), or `None`
            (default): Keras' global dtype policy, with the head in float32
            if that policy is mixed.

    Returns:
        A functional `keras.Model`, not compiled.

    Example:

    >>> import transferkit
    >>> model = transferkit.build("mobilenet_v2", 5, dropout=0.2,
    ...                           kernel="l2:1e-4")  # doctest: +SKIP
    >>> model.get_layer("backbone").trainable = False  # doctest: +SKIP
    >>> model.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
    """
    output, argument = output_argument(output, head, "build")
    activation, units = _check_head(output, num_classes, argument)
    if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise TransferkitError(f"dropout must be a number in [0, 1), got {dropout!r}.")
    if pooling not in _POOLING:
        raise TransferkitError(f"pooling must be 'avg' or 'max', got {pooling!r}.")
    # Parsed before the (slow) backbone is built, so a typo fails at once.
    penalties = {"kernel": get_penalty(kernel), "bias": get_penalty(bias),
                 "activity": get_penalty(activity)}
    policy = policy_name(precision)
    with dtype_policy(policy):
        model = _assemble(backbone, weights, input_shape, cut_at, augmentation, pooling,
                          dropout, units, activation, name,
                          float32="float32" if is_mixed(policy) else None)
    if precision == "mixed" and not is_mixed(model.get_layer(BACKBONE).dtype_policy.name):
        raise TransferkitError(
            "precision='mixed' applies to catalogue backbones, which are built under the "
            "policy; a given model or .keras file keeps its layers' own dtypes (build it "
            "under keras.config.set_dtype_policy('mixed_bfloat16') instead).")
    if any(p is not None for p in penalties.values()):
        from transferkit.regularizers.regularization import regularize

        regularize(model, **penalties)
    return model


def _assemble(backbone, weights, input_shape, cut_at, augmentation, pooling, dropout, units,
              activation, name, float32):
    """The functional model; `float32` the dtype of the layers after the backbone."""
    features = load_backbone(
        backbone, weights=weights, input_shape=input_shape, cut_at=cut_at, name=BACKBONE
    )
    source = features.inputs[0]
    text = "int" in str(source.dtype)
    if text and augmentation is not None:
        raise TransferkitError("augmentation is for image backbones; this one takes token ids.")
    inputs = keras.Input(source.shape[1:], dtype=source.dtype,
                         name="token_ids" if text else "image")
    x = inputs if augmentation is None else augmentation(inputs)
    x = features(x)
    if len(x.shape) == 4:
        x = _POOLING[pooling](name=f"{pooling}_pool", dtype=float32)(x)
    elif len(x.shape) != 2:
        raise TransferkitError(
            f"The backbone outputs shape {tuple(x.shape)}; the head needs a feature map "
            "(batch, height, width, channels) or vectors (batch, features). Choose "
            "another cut_at layer."
        )
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout", dtype=float32)(x)
    outputs = keras.layers.Dense(units, activation=activation, name=HEAD, dtype=float32)(x)
    if name is None:
        # Catalogue names name the model (freeze plans read block names from
        # it); paths and models do not.
        named = isinstance(backbone, str) and re.fullmatch(r"[A-Za-z0-9_\-]+", backbone)
        name = f"{backbone}_classifier" if named else "classifier"
    # Made under the policy: Keras scales the loss of a mixed_float16 model.
    return keras.Model(inputs, outputs, name=name)


def output_argument(output, head, caller):
    """`(value, the argument's name)`: `output`, or the deprecated `head` in its place."""
    if head is None:
        return output, "output"
    warnings.warn(f"{caller}(head=...) is now {caller}(output=...); head= will be removed.",
                  DeprecationWarning, stacklevel=3)
    return head, "head"


def _check_head(head, num_classes, argument="output"):
    if head not in _HEADS:
        raise TransferkitError(
            f"{argument} must be one of {', '.join(map(repr, _HEADS))}; got {head!r}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TransferkitError(f"num_classes must be an int, got {num_classes!r}.")
    activation, minimum = _HEADS[head]
    if num_classes < minimum:
        raise TransferkitError(
            f"{argument}={head!r} needs num_classes >= {minimum}, got {num_classes}"
            + (f"; for one yes/no output use {argument}='binary' with num_classes=2."
               if head == "softmax" else ".")
        )
    if head == "binary":
        if num_classes != 2:
            raise TransferkitError(
                f"{argument}='binary' is for two classes (one sigmoid output); got "
                f"num_classes={num_classes}. Use {argument}='softmax' or 'sigmoid' for more."
            )
        return activation, 1
    return activation, int(num_classes)
