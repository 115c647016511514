"""Walking a model's layers, nested models included, with qualified names."""

import keras
from keras.src.models.functional import Functional

# Kernel-like weights: the regularizer attribute Keras layers read at build
# time, and the attributes that may hold the variable it governs, in order of
# preference (`Dense` keeps its variable in `_kernel` behind a LoRA-aware
# property; `DepthwiseConv2D` calls its depthwise kernel `kernel`).
KERNEL_SLOTS = {
    "kernel_regularizer": ("_kernel", "kernel"),
    "depthwise_regularizer": ("depthwise_kernel", "kernel"),
    "pointwise_regularizer": ("pointwise_kernel",),
    "embeddings_regularizer": ("_embeddings", "embeddings"),
}
BIAS_SLOTS = {"bias_regularizer": ("bias",)}
# The same weights' constraint attributes (`kernel_constraint`, ...), which
# `get_config` saves; the variable's own `constraint` is what the optimizer
# applies after each update.
KERNEL_CONSTRAINT_SLOTS = {
    name.replace("_regularizer", "_constraint"): candidates
    for name, candidates in KERNEL_SLOTS.items()
}
BIAS_CONSTRAINT_SLOTS = {"bias_constraint": ("bias",)}


def iter_layers(model):
    """Yields `(qualified_name, layer, saved)` for every layer inside `model`.

    `qualified_name` joins the names of the enclosing models with `/`.
    `saved` says whether the layer's own config is what a `.keras` file stores:
    true inside functional and sequential models, false inside layers or
    subclassed models that rebuild their sublayers from constructor arguments
    (KerasHub backbones, `MultiHeadAttention`).
    """
    yield from _iter(model, prefix="", saved=True)


def _iter(parent, prefix, saved):
    stores_layers = _stores_layer_configs(parent)
    children = (
        parent.layers
        if isinstance(parent, keras.Model)
        # Composite layers have no public list of sublayers.
        else parent._flatten_layers(include_self=False, recursive=False)
    )
    for layer in children:
        name = f"{prefix}{layer.name}"
        layer_saved = saved and stores_layers
        yield name, layer, layer_saved
        yield from _iter(layer, prefix=f"{name}/", saved=layer_saved)


def _stores_layer_configs(layer):
    if isinstance(layer, keras.Sequential):
        return True
    # Subclasses of Functional that override `get_config` (KerasHub backbones)
    # are rebuilt from their arguments, so their layers' configs are not saved.
    return (
        isinstance(layer, Functional)
        and type(layer).get_config is Functional.get_config
    )


def weight_slots(layer, slots):
    """Yields `(attribute, variable)` for each slot of `slots` that `layer` has."""
    for attribute, candidates in slots.items():
        if not hasattr(layer, attribute):
            continue
        for candidate in candidates:
            variable = getattr(layer, candidate, None)
            if isinstance(variable, keras.Variable):
                yield attribute, variable
                break
