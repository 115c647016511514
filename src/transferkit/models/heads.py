"""What a model's output layer predicts: its activation and its width.

The recipe (`transferkit.FineTuner`) and the learning-rate finder choose a
loss and metrics from it when none is given.
"""

from typing import NamedTuple

from transferkit.errors import TransferkitError


class OutputHead(NamedTuple):
    """A model's output: the activation's name and the number of units."""

    activation: str
    units: int


def output_head(model):
    """The activation and the number of units of `model`'s output layer.

    The activation is the output layer's `activation` function's name,
    `"linear"` for a layer without one (it outputs raw scores).

    Args:
        model: a functional or `Sequential` Keras model with a known output
            shape; for several outputs, the first.

    Returns:
        An `OutputHead(activation, units)`, which unpacks as a pair.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])
    >>> output_head(model)
    OutputHead(activation='softmax', units=3)
    """
    try:
        layer = model.layers[-1]
        units = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError):
        raise TransferkitError(
            f"Cannot tell the output layer of {_name(model)}: expected a built functional or "
            "Sequential Keras model."
        ) from None
    if units is None:
        raise TransferkitError(f"The output of {_name(model)} has no fixed number of units.")
    activation = getattr(layer, "activation", None)
    return OutputHead(getattr(activation, "__name__", None) or "linear", int(units))


def default_loss(model):
    """The loss matching `model`'s output activation.

    Sparse categorical cross-entropy for softmax (labels are class indices),
    binary cross-entropy for sigmoid, mean squared error otherwise.

    Example:

    >>> import keras
    >>> default_loss(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")]))
    'binary_crossentropy'
    """
    return {"softmax": "sparse_categorical_crossentropy",
            "sigmoid": "binary_crossentropy"}.get(output_head(model).activation,
                                                  "mean_squared_error")


def default_metrics(model):
    """The metrics matching `model`'s output: `["accuracy"]` for classifiers.

    Several sigmoid units (multi-label) get `["binary_accuracy"]`; a head
    without a softmax or sigmoid none.

    Example:

    >>> import keras
    >>> default_metrics(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "sigmoid")]))
    ['binary_accuracy']
    """
    activation, units = output_head(model)
    if activation == "sigmoid" and units > 1:
        return ["binary_accuracy"]
    return ["accuracy"] if activation in ("softmax", "sigmoid") else []


def _name(model):
    return repr(getattr(model, "name", type(model).__name__))
