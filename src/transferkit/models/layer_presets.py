"""Layer presets: a layer class with defaults, for building heads in one line.

The idiom is `functools.partial(keras.layers.Dense, activation="elu",
kernel_initializer="he_normal", kernel_regularizer=keras.regularizers.l2(0.01))`:
every hidden layer of a head gets the same activation, initializer and
penalty. A `LayerPreset` does the same, and also takes transferkit's specs
(`kernel_regularizer="l2:1e-2"`, `kernel_constraint="max_norm:3"`), checks
its argument names when it is made, and has a readable `repr`. The layers it
builds are plain Keras layers: they save and load like any other.
"""

import difflib
import functools
import inspect

import keras

from transferkit.regularizers.constraints import constraint_for, get_constraint
from transferkit.errors import TransferkitError
from transferkit.regularizers.penalties import get_penalty

# Arguments every Keras layer takes, besides its class's own.
_BASE_ARGUMENTS = {"name", "dtype", "trainable", "autocast", "input_shape", "input_dim", "batch_size"}


class LayerPreset:
    """A layer class and default arguments; calling it builds one layer.

    Arguments given in the call override the defaults. Arguments ending in
    `_regularizer` accept penalty specs (`"l2:1e-4"`, `"l1:1e-5"`,
    `"l1_l2:1e-5,1e-4"`) and arguments ending in `_constraint` accept
    constraint specs (`"max_norm:3"`, `"non_neg"`, ...; a norm constraint
    without `axis=` gets one norm per output unit of the layer, e.g. per
    filter of a `Conv2D`), besides Keras objects.

    Attributes:
        layer_class: the Keras layer class.
        defaults: the default keyword arguments (specs as given).

    Example:

    >>> import keras
    >>> Dense = LayerPreset(keras.layers.Dense, activation="elu",
    ...                     kernel_initializer="he_normal", kernel_regularizer="l2:1e-2")
    >>> layer = Dense(100)
    >>> layer.activation.__name__, layer.kernel_regularizer.get_config()
    ('elu', {'l2': 0.01})
    >>> Dense(10, activation="softmax").activation.__name__
    'softmax'
    """

    def __init__(self, layer_class, **defaults):
        if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
            raise TransferkitError(
                f"A layer preset needs a Keras layer class such as keras.layers.Dense, "
                f"got {layer_class!r}."
            )
        self.layer_class = layer_class
        self.defaults = dict(defaults)
        _check_arguments(layer_class, self.defaults)

    def __call__(self, *args, **kwargs):
        _check_arguments(self.layer_class, kwargs)
        arguments = {**self.defaults, **kwargs}
        constraints = {}
        for key, value in list(arguments.items()):
            if key.endswith("_regularizer"):
                arguments[key] = get_penalty(value) if isinstance(value, str) else value
            elif key.endswith("_constraint") and isinstance(value, str):
                # The default axis depends on the layer (per filter of a
                # convolution): set once the layer exists, before it is built.
                constraints[key] = arguments.pop(key)
        layer = self.layer_class(*args, **arguments)
        for key, spec in constraints.items():
            setattr(layer, key, constraint_for(spec, layer, key))
        return layer

    def with_defaults(self, **defaults):
        """A new preset with these defaults added or replaced."""
        return LayerPreset(self.layer_class, **{**self.defaults, **defaults})

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"LayerPreset({self.layer_class.__name__}" + (f", {arguments})" if arguments else ")")


def layer_preset(layer_class, **defaults):
    """Returns a callable that builds `layer_class` layers with these defaults.

    Like `functools.partial(layer_class, **defaults)`, with transferkit specs
    for penalties and constraints, and argument names checked at once.

    Args:
        layer_class: a Keras layer class, such as `keras.layers.Dense`.
        **defaults: default constructor arguments; `*_regularizer` ones take
            penalty specs (`"l2:1e-2"`), `*_constraint` ones constraint specs
            (`"max_norm:3"`).

    Returns:
        A `LayerPreset`.

    Example:

    >>> import keras
    >>> Dense = layer_preset(keras.layers.Dense, activation="elu",
    ...                      kernel_initializer="he_normal", kernel_regularizer="l2:1e-2")
    >>> model = keras.Sequential([keras.Input((64,)), Dense(100), Dense(100),
    ...                           keras.layers.Dense(10, activation="softmax")])
    >>> len(model.losses)
    2
    """
    return LayerPreset(layer_class, **defaults)


def _check_arguments(layer_class, arguments):
    known = _accepted(layer_class)
    for key, value in arguments.items():
        if known is not None and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise TransferkitError(f"{layer_class.__name__} has no argument {key!r}{hint}")
        # Specs fail here, when the preset is made, not when a layer is.
        if key.endswith("_regularizer") and isinstance(value, str):
            get_penalty(value)
        elif key.endswith("_constraint") and isinstance(value, str):
            get_constraint(value)


@functools.lru_cache(maxsize=None)
def _accepted(layer_class):
    """The keyword arguments `layer_class` takes, or `None` if it takes any."""
    names = set(_BASE_ARGUMENTS)
    for cls in layer_class.__mro__:
        if "__init__" not in vars(cls) or cls is object:
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
        if cls is keras.layers.Layer:
            break
    names.discard("self")
    return names


# Named presets: (layer class, defaults, why).
_PRESETS = {
    "dense-relu-he": (
        keras.layers.Dense,
        {"activation": "relu", "kernel_initializer": "he_normal"},
        "ReLU with He initialization, which keeps the variance of ReLU activations "
        "steady from layer to layer: the usual hidden layer.",
    ),
    "dense-elu-he": (
        keras.layers.Dense,
        {"activation": "elu", "kernel_initializer": "he_normal"},
        "ELU with He initialization: like ReLU, but smooth and with negative outputs "
        "that keep mean activations near zero; often trains a little faster.",
    ),
    "dense-selu": (
        keras.layers.Dense,
        {"activation": "selu", "kernel_initializer": "lecun_normal"},
        "SELU with LeCun normal initialization, which SELU needs to self-normalize "
        "(outputs keep mean 0 and variance 1) in a plain stack of dense layers; use "
        "AlphaDropout, not Dropout, with it.",
    ),
    "dense-l2": (
        keras.layers.Dense,
        {"activation": "elu", "kernel_initializer": "he_normal", "kernel_regularizer": "l2:1e-2"},
        "ELU, He initialization and an L2 penalty of 0.01 on the kernel: the "
        "regularized hidden layer of the functools.partial idiom.",
    ),
    "dense-max-norm": (
        keras.layers.Dense,
        {"activation": "relu", "kernel_initializer": "he_normal", "kernel_constraint": "max_norm:3"},
        "ReLU, He initialization and each unit's incoming weights kept to norm <= 3: "
        "max-norm regularization, which pairs well with dropout.",
    ),
    "conv2d-relu-he": (
        keras.layers.Conv2D,
        {"activation": "relu", "kernel_initializer": "he_normal", "padding": "same"},
        "A 'same'-padded Conv2D with ReLU and He initialization (give filters and "
        "kernel_size per call).",
    ),
}


def get_preset(name, **overrides):
    """Returns a named layer preset, with any defaults overridden.

    Presets (see `list_presets()` for why each):
    `"dense-relu-he"`, `"dense-elu-he"`, `"dense-selu"`, `"dense-l2"`,
    `"dense-max-norm"`, `"conv2d-relu-he"`.

    Args:
        name: the preset's name.
        **overrides: defaults to add or replace, e.g.
            `kernel_regularizer="l2:1e-3"`.

    Returns:
        A `LayerPreset`.

    Example:

    >>> import keras
    >>> Dense = get_preset("dense-elu-he", kernel_regularizer="l2:1e-2")
    >>> model = keras.Sequential([keras.Input((64,)), Dense(100), Dense(100),
    ...                           keras.layers.Dense(10, activation="softmax")])
    >>> [layer.activation.__name__ for layer in model.layers]
    ['elu', 'elu', 'softmax']
    """
    if name not in _PRESETS:
        close = difflib.get_close_matches(str(name), list(_PRESETS), n=2)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else (
            f"choose one of {', '.join(_PRESETS)}."
        )
        raise TransferkitError(f"Unknown layer preset {name!r}; {hint}")
    layer_class, defaults, _ = _PRESETS[name]
    return LayerPreset(layer_class, **{**defaults, **overrides})


def list_presets():
    """The named presets: `{name: why}`."""
    return {name: why for name, (_, _, why) in _PRESETS.items()}


# Names that say which presets these are (KerasHub's model presets are another
# thing: `transferkit.load_preset`).
get_layer_preset = get_preset
list_layer_presets = list_presets
