"""Optimizer specs, read and checked without Keras: `"sgd:momentum=0.9,nesterov=true"`.

An optimizer spec names one of the Keras optimizers transferkit knows and
its parameters, in transferkit's one spec grammar (`transferkit.specs`,
keyword settings only), or as a dict (`{"name": "adam", "beta_1": 0.9}`,
what `transferkit.optim.optimizers.describe` records). This module reads
a spec and checks the name, that each parameter is an argument of the Keras
class, and that its value has the type of the argument's default. It does
not import Keras: the arguments come from `PARAMETERS`, a copy of the Keras
classes' signatures that `tests/test_optimizers.py` compares with Keras', so
that it cannot drift. What the Keras constructor itself checks (SGD's
momentum in [0, 1], one clipping option at a time, the EMA settings, ...)
and a learning rate given as a Keras schedule are checked when
`transferkit.optim.optimizers.get_optimizer` makes the optimizer.

Example:

>>> spec = parse_optimizer("sgd:momentum=0.9,nesterov=true")
>>> spec.name, spec.params
('sgd', {'momentum': 0.9, 'nesterov': True})
"""

import dataclasses
import difflib
import numbers

from transferkit import specs
from transferkit.errors import TransferkitError

# name -> (its class in `keras.optimizers`, the arguments that define its
# algorithm, with their defaults, in signature order). Checked against Keras
# 3.15.1 by tests/test_optimizers.py.
KERAS_OPTIMIZERS = {
    "sgd": ("SGD", {"momentum": 0.0, "nesterov": False}),
    "adagrad": ("Adagrad", {"initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    "rmsprop": ("RMSprop", {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}),
    "adam": ("Adam", {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}),
    "nadam": ("Nadam", {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    "adamw": ("AdamW", {"weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
                        "epsilon": 1e-7, "amsgrad": False}),
}
NAMES = tuple(KERAS_OPTIMIZERS)
# The arguments every Keras optimizer takes after its own, with the defaults
# of Keras' BaseOptimizer, in signature order.
COMMON = {
    "weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
    "loss_scale_factor": None, "gradient_accumulation_steps": None,
}
_USAGE = "NAME:KEY=VALUE,KEY=VALUE, such as 'sgd:momentum=0.9,nesterov=true'"


def parameters(name):
    """The parameters of an optimizer and their defaults, in the Keras signature's order.

    Every argument of the Keras class but `learning_rate` and `name`.

    Example:

    >>> list(parameters("sgd"))[:4]
    ['momentum', 'nesterov', 'weight_decay', 'clipnorm']
    """
    own = KERAS_OPTIMIZERS[name][1]
    return {**own, **{key: value for key, value in COMMON.items() if key not in own}}


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A checked optimizer spec.

    Attributes:
        name: one of `NAMES`, such as `"sgd"`.
        params: the parameters given, in the types of their Keras defaults.
        learning_rate: the learning rate given, or `None`; as given (a
            number, or a Keras schedule or its serialized dict), checked when
            the optimizer is made.
        multipliers: the per-variable learning-rate multipliers given, or
            `None`; checked when the optimizer is made.
    """

    name: str
    params: dict
    learning_rate: object = None
    multipliers: object = None


def parse_spec(spec):
    """Splits a spec string `"NAME:KEY=VALUE,KEY=VALUE"` into `(name, params)`.

    The string is read by `transferkit.specs.parse`, with keyword settings
    only: values are read as `true`/`false`, `none`, integers, floats, lists
    of those in brackets or separated by `;` (or `/`, which needs no quoting
    in a shell), or else kept as strings. The name and keys are lower-cased.

    Example:

    >>> parse_spec("sgd:momentum=0.9,nesterov=true")
    ('sgd', {'momentum': 0.9, 'nesterov': True})
    >>> parse_spec("piecewise:boundaries=100;200,values=1e-3;1e-4;1e-5")
    ('piecewise', {'boundaries': [100, 200], 'values': [0.001, 0.0001, 1e-05]})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise TransferkitError(f"Expected a spec string such as 'sgd:momentum=0.9'; got {spec!r}.")
    parsed = specs.parse(spec, usage=_USAGE, positional=False, require_name=True)
    return parsed.name, dict(parsed.kwargs)


def parse_optimizer(spec, learning_rate=None, multipliers=None, **params):
    """Reads and checks an optimizer spec into an `OptimizerSpec`.

    Args:
        spec: `"sgd"`, `"adagrad"`, `"rmsprop"`, `"adam"`, `"nadam"` or
            `"adamw"`, optionally with parameters as in
            `"sgd:momentum=0.9,nesterov=true"`; or a dict as
            `transferkit.optim.optimizers.describe` returns. (Keras'
            own forms, an optimizer object or `keras.optimizers.serialize`'s
            dict, are read by `get_optimizer`.)
        learning_rate: the learning rate, if given apart. Defaults to `None`.
        multipliers: per-variable learning-rate multipliers, if given apart.
            Defaults to `None`.
        **params: more parameters, e.g. `momentum=0.9`.

    Returns:
        An `OptimizerSpec`.

    Raises:
        TransferkitError: in one line, for an unknown name or parameter, a
            value of the wrong type, or a parameter given twice.

    Example:

    >>> spec = parse_optimizer({"name": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4})
    >>> spec.params, spec.learning_rate
    ({'weight_decay': 0.0001}, 0.001)
    """
    if isinstance(spec, dict):
        params = _merged(dict(spec), params, "the spec dict")
        spec = params.pop("name", None)
        learning_rate = _merged_value(params, "learning_rate", learning_rate, spec)
        multipliers = _merged_value(params, "multipliers", multipliers, spec)
    if not isinstance(spec, str):
        raise TransferkitError(
            f"An optimizer is a name such as 'adam' or 'sgd:momentum=0.9', got {spec!r}."
        )
    key, spec_params = parse_spec(spec)
    if key not in KERAS_OPTIMIZERS:
        close = difflib.get_close_matches(key, NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TransferkitError(
            f"Unknown optimizer {key!r}{hint}; use one of {', '.join(NAMES)}."
        )
    params = _merged(spec_params, params, repr(spec))
    learning_rate = _merged_value(params, "learning_rate", learning_rate, spec)
    return OptimizerSpec(key, _checked_params(key, params), learning_rate, multipliers)


def _checked_params(key, params):
    signature = parameters(key)
    checked = {}
    for param, value in params.items():
        if param not in signature:
            close = difflib.get_close_matches(param, signature, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TransferkitError(
                f"Optimizer {key!r} has no parameter {param!r}{hint}; valid: "
                f"learning_rate, {', '.join(signature)}."
            )
        checked[param] = _coerced(key, param, value, signature[param])
    return checked


def _coerced(key, param, value, default):
    """`value` in the type of the parameter's default, or an error."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, float):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    elif isinstance(default, int):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) \
                and float(value).is_integer():
            return int(value)
        expected = "an integer"
    else:  # None: optional numbers (clipnorm, weight_decay, ...)
        if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            return value
        expected = "a number or none"
    raise TransferkitError(
        f"Optimizer {key!r}: {param}={value!r} should be {expected} "
        f"(the default is {default!r})."
    )


def _merged(first, second, where):
    both = sorted(set(first) & set(second))
    if both:
        raise TransferkitError(f"{', '.join(both)} given both in {where} and as an argument.")
    return {**first, **second}


def _merged_value(params, key, value, name):
    if key in params:
        if value is not None:
            raise TransferkitError(f"{key} given both in {name!r} and as an argument.")
        return params.pop(key)
    return value
