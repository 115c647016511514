"""Walking a model's layers, nested models included, with qualified names."""

import keras

from transferkit._compat import LORA_BASE_ATTRIBUTES, has_functional_config, sublayers

# Kernel-like weights: the regularizer attribute Keras layers read at build
# time, and the attributes that may hold the variable it governs, in order of
# preference (`Dense` keeps its variable behind a LoRA-aware `kernel`
# property, see `LORA_BASE_ATTRIBUTES`; `DepthwiseConv2D` calls its
# depthwise kernel `kernel`).
KERNEL_SLOTS = {
    "kernel_regularizer": (LORA_BASE_ATTRIBUTES["kernel"], "kernel"),
    "depthwise_regularizer": ("depthwise_kernel", "kernel"),
    "pointwise_regularizer": ("pointwise_kernel",),
    "embeddings_regularizer": (LORA_BASE_ATTRIBUTES["embeddings"], "embeddings"),
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

    Args:
        model: a `keras.Model`, or any layer (its sublayers are walked).

    Example:

    >>> [name for name, _, _ in iter_layers(model)][:2]  # doctest: +SKIP
    ['backbone', 'backbone/conv1']
    """
    yield from _iter(model, prefix="", saved=True)


def _iter(parent, prefix, saved):
    stores_layers = stores_layer_configs(parent)
    children = parent.layers if isinstance(parent, keras.Model) else sublayers(parent)
    for layer in children:
        name = f"{prefix}{layer.name}"
        layer_saved = saved and stores_layers
        yield name, layer, layer_saved
        yield from _iter(layer, prefix=f"{name}/", saved=layer_saved)


def stores_layer_configs(layer):
    """Whether `layer` is a model whose `.keras` config is its layers' configs and graph.

    True for sequential models and for functional models with Keras' own
    `get_config`; false for subclassed models, for functional subclasses that
    are rebuilt from their arguments (KerasHub backbones), and for layers.
    Such a model's graph can also be rebuilt around its own layer objects.

    Args:
        layer: any `keras.layers.Layer`.

    Example:

    >>> stores_layer_configs(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    True
    """
    return isinstance(layer, keras.Sequential) or has_functional_config(layer)


def weight_slots(layer, slots):
    """Yields `(attribute, variable)` for each slot of `slots` that `layer` has.

    Args:
        layer: a `keras.layers.Layer`.
        slots: a dict `{attribute: candidates}` such as `KERNEL_SLOTS`: the
            layer's regularizer (or constraint) attribute, and the attributes
            that may hold its variable, in order of preference.

    Example:

    >>> [a for a, _ in weight_slots(dense, KERNEL_SLOTS)]  # doctest: +SKIP
    ['kernel_regularizer']
    """
    for attribute, candidates in slots.items():
        if not hasattr(layer, attribute):
            continue
        for candidate in candidates:
            variable = getattr(layer, candidate, None)
            if isinstance(variable, keras.Variable):
                yield attribute, variable
                break
