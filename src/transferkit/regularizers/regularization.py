"""Adding weight and activity penalties to a built, pretrained model in place."""

import warnings

from transferkit._walk import BIAS_SLOTS, KERNEL_SLOTS, weight_slots
from transferkit.errors import TransferkitError
from transferkit.regularizers.audits import build_audit
from transferkit.regularizers.layers import forget_traced_steps, select_layers
from transferkit.regularizers.penalties import get_penalty


def regularize(model, kernel=None, bias=None, activity=None, layers=None):
    """Adds L1 / L2 penalties to a built model, keeping every weight as it is.

    Setting `layer.kernel_regularizer` on a built model changes only its
    config: Keras attached the regularizer to the variable when the layer was
    built, so no penalty reaches the loss. Rebuilding the model from its config
    does apply it, but resets the weights. This sets the penalty where Keras
    reads it (the variable) *and* where it saves it (the layer), in place,
    so the weights stay bit for bit, the penalty is in `model.losses`, and a
    saved `.keras` file reloads with it.

    Kernel penalties go to every kernel-like weight: `Dense` and `EinsumDense`
    kernels, convolution and transposed-convolution kernels, depthwise and
    pointwise kernels, `Embedding` matrices. Bias penalties go to biases.
    Activity penalties go to the outputs of those same layers. Nested models
    (a backbone inside a functional model) are walked.

    Args:
        model: a built Keras model (for instance from `keras.applications`).
        kernel: penalty for kernel-like weights: a `keras.regularizers`
            object or a spec such as `"l2:1e-4"`, `"l1:1e-5"` or
            `"l1_l2:1e-5,1e-4"`. Defaults to `None` (left unchanged).
        bias: penalty for biases, same forms. Defaults to `None`.
        activity: penalty for layer outputs, same forms. Defaults to `None`.
        layers: which layers to regularize: a regular expression searched in
            each layer's qualified name (`"backbone/conv5_.*"`), a layer class,
            or a tuple of classes. Defaults to `None` (every layer).

    Returns:
        A `RegularizationAudit` of the penalties set: for each weight its
        penalty, its current value, and whether it is active (frozen weights'
        penalties count only once they are unfrozen). `audit.verify(model)`
        checks them against `model.losses`.

    Example:

    >>> import keras, transferkit
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    >>> len(model.losses)
    0
    >>> report = transferkit.regularize(model, kernel="l2:1e-4", bias="l1:1e-5")
    >>> len(model.losses)
    2
    """
    requested = {
        "kernel": get_penalty(kernel),
        "bias": get_penalty(bias),
        "activity": get_penalty(activity),
    }
    if all(r is None for r in requested.values()):
        raise TransferkitError(
            "Nothing to apply: give at least one of kernel, bias or activity "
            "(e.g. kernel='l2:1e-4')."
        )
    if not model.built:
        raise TransferkitError(
            f"Model {model.name!r} is not built: call it on data or build it "
            "before regularizing, so that its weights exist."
        )
    selected = select_layers(model, layers)
    slots = []
    for name, layer, saved in selected:
        slots += _apply(name, layer, saved, requested)
    if not slots:
        raise TransferkitError(
            f"No layer matched by layers={layers!r} has a weight to regularize; "
            "check the pattern against the model's layer names."
        )
    forget_traced_steps(model)
    report = build_audit(model, slots)
    if report.unsaved:
        warnings.warn(
            f"{len(report.unsaved)} penalties sit inside layers that a .keras "
            "file rebuilds from their constructor arguments (e.g. "
            f"{report.unsaved[0].layer}); they apply now but are lost on save.",
            stacklevel=2,
        )
    return report


def _apply(name, layer, saved, requested):
    """Sets the requested penalties on one layer; returns the slots it set."""
    slots = []
    kernels = list(weight_slots(layer, KERNEL_SLOTS))
    for kind, table in (("kernel", kernels), ("bias", weight_slots(layer, BIAS_SLOTS))):
        regularizer = requested[kind]
        if regularizer is None:
            continue
        for attribute, variable in table:
            # The variable is what Keras reads for the loss; the layer
            # attribute is what `get_config` writes to a saved file.
            variable.regularizer = regularizer
            setattr(layer, attribute, regularizer)
            slots.append((name, layer, attribute, variable, saved))
    # Activity penalties go on layers with a kernel: not on every activation,
    # pooling or reshape layer.
    if requested["activity"] is not None and kernels:
        layer.activity_regularizer = requested["activity"]
        slots.append((name, layer, "activity_regularizer", None, saved))
    return slots

