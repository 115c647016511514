"""Which layers and weights of a built model the penalties and constraints go on.

Shared by `regularize`, `constrain` and the audits, below all three.
"""

import re

from transferkit._walk import (
    BIAS_CONSTRAINT_SLOTS,
    BIAS_SLOTS,
    KERNEL_CONSTRAINT_SLOTS,
    KERNEL_SLOTS,
    iter_layers,
    weight_slots,
)
from transferkit.errors import TransferkitError


def select_layers(model, layers=None):
    """The `(qualified name, layer, saved)` triples of `model` that `layers` picks.

    Nested models are walked; `saved` says whether a `.keras` file keeps
    what is set on the layer.

    Args:
        model: a Keras model.
        layers: a regular expression searched in each layer's qualified name
            (`"backbone/conv5_.*"`), a layer class, or a tuple of classes.
            Defaults to `None` (every layer).

    Returns:
        A non-empty list of `(name, layer, saved)`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="out")])
    >>> [name for name, _, _ in select_layers(model, "^out$")]
    ['out']
    """
    selected = list(iter_layers(model))
    if layers is None:
        return selected
    if isinstance(layers, str):
        try:
            pattern = re.compile(layers)
        except re.error as e:
            raise TransferkitError(f"Invalid layer pattern {layers!r}: {e}.") from None
        matches = [s for s in selected if pattern.search(s[0])]
    elif isinstance(layers, type) or (
        isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)
    ):
        matches = [s for s in selected if isinstance(s[1], layers)]
    else:
        raise TransferkitError(
            f"Invalid layers={layers!r}: expected a regular expression, a layer "
            "class or a tuple of layer classes."
        )
    if not matches:
        raise TransferkitError(
            f"layers={layers!r} matches no layer of {model.name!r}; its layers "
            f"include {', '.join(s[0] for s in selected[:5])}..."
        )
    return matches


def forget_traced_steps(model):
    """Drops the model's traced train and test steps, so the next `fit` traces again.

    A step traced before a penalty or constraint was set read `model.losses`
    and the variables' constraints then, without it.
    """
    for attribute in ("train_function", "test_function"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)


def regularized_slots(model):
    """Yields `(name, layer, attribute, variable, saved)` for every penalty of `model`.

    Weight penalties are read from the variables (what Keras adds to the
    loss); activity penalties, with `variable=None`, from the layers.
    """
    for name, layer, saved in iter_layers(model):
        for attribute, variable in weight_slots(layer, {**KERNEL_SLOTS, **BIAS_SLOTS}):
            if variable.regularizer is not None:
                yield name, layer, attribute, variable, saved
        if getattr(layer, "activity_regularizer", None) is not None:
            yield name, layer, "activity_regularizer", None, saved


def constrained_slots(model):
    """Yields `(name, layer, attribute, variable, saved)` for every weight with a
    constraint on its variable or its layer attribute."""
    slots = {**KERNEL_CONSTRAINT_SLOTS, **BIAS_CONSTRAINT_SLOTS}
    for name, layer, saved in iter_layers(model):
        for attribute, variable in weight_slots(layer, slots):
            if variable.constraint is not None or getattr(layer, attribute, None) is not None:
                yield name, layer, attribute, variable, saved
