"""Weight penalties from short specs: `"l2:1e-4"`, `"l1:1e-5"`, `"l1_l2:1e-5,1e-4"`.

The specs are written in transferkit's one spec grammar (`transferkit.specs`).
"""

import math
import numbers

import keras
import numpy as np

from transferkit import specs
from transferkit.errors import TransferkitError

# kind -> (Keras class, its strengths in the order a spec gives them)
_KINDS = {
    "l1": (keras.regularizers.L1, ("l1",)),
    "l2": (keras.regularizers.L2, ("l2",)),
    "l1_l2": (keras.regularizers.L1L2, ("l1", "l2")),
}
_EXAMPLES = "'l2:1e-4', 'l1:1e-5' or 'l1_l2:1e-5,1e-4'"
_USAGE = f"KIND:STRENGTH[,STRENGTH], such as {_EXAMPLES}"


def get(identifier):
    """Returns a Keras regularizer for a penalty identifier, or `None` for `None`.

    Args:
        identifier: one of

            - `None` (no penalty), returned as it is;
            - a `keras.regularizers.Regularizer`, returned as it is;
            - a spec string `KIND:STRENGTH[,STRENGTH]`, where `KIND` is `l1`,
              `l2` or `l1_l2` (elastic net: the L1 strength, then the L2
              strength); strengths may also be named, as in
              `"l1_l2:l1=1e-5,l2=1e-4"`;
            - a dict: a regularizer's `get_config()` (`{"l2": 1e-4}`), the
              same with its kind (`{"name": "l1_l2", "l1": 1e-5, "l2": 1e-4}`),
              or `keras.regularizers.serialize(regularizer)`.

            Strengths are non-negative finite numbers.

    Returns:
        A `keras.regularizers.Regularizer`, or `None`.

    Example:

    >>> get("l1_l2:1e-5,1e-4").get_config()
    {'l1': 1e-05, 'l2': 0.0001}
    >>> get({"l2": 1e-4}).get_config()
    {'l2': 0.0001}
    """
    if identifier is None or isinstance(identifier, keras.regularizers.Regularizer):
        return identifier
    if isinstance(identifier, str):
        spec = specs.parse(identifier, what="penalty", usage=_USAGE)
        return _build(spec.name, spec.args, spec.kwargs, identifier)
    if isinstance(identifier, dict):
        return _from_dict(identifier)
    raise TransferkitError(
        f"Invalid penalty {identifier!r}: expected a keras regularizer, a dict such as "
        f"{{'name': 'l2', 'l2': 0.0001}} or a string such as {_EXAMPLES}."
    )


def get_penalty(spec):
    """Returns a Keras regularizer for a spec, or `None` for `None` (see `get`).

    Args:
        spec: a `keras.regularizers.Regularizer` (returned as it is), `None`,
            a string `KIND:STRENGTH[,STRENGTH]` where `KIND` is `l1`, `l2`
            or `l1_l2` (elastic net: the L1 strength, then the L2 strength),
            or a dict (see `get`). Strengths are non-negative finite numbers.

    Example:

    >>> get_penalty("l1_l2:1e-5,1e-4").get_config()
    {'l1': 1e-05, 'l2': 0.0001}
    """
    return get(spec)


def describe(regularizer):
    """A short human-readable name for a regularizer, e.g. `l2(0.0001)`."""
    config = _l1_l2_config(regularizer)
    if config is None:
        return type(regularizer).__name__
    l1, l2 = config
    if l1 and l2:
        return f"l1_l2({l1:g}, {l2:g})"
    return f"l1({l1:g})" if l1 else f"l2({l2:g})"


def penalty_value(regularizer, weight):
    """The penalty of one weight array, computed with NumPy (float64 sums).

    L1, L2 and L1L2 are evaluated from their strengths
    (`l1 * sum(|w|) + l2 * sum(w**2)`); any other regularizer is called on the
    weight.
    """
    weight = np.asarray(keras.ops.convert_to_numpy(weight))
    config = _l1_l2_config(regularizer)
    if config is None:
        return float(keras.ops.convert_to_numpy(regularizer(weight)))
    l1, l2 = config
    # Accumulate in float64 without a float64 copy of the whole weight.
    total = l1 * np.abs(weight).sum(dtype=np.float64) if l1 else 0.0
    if l2:
        total += l2 * np.square(weight).sum(dtype=np.float64)
    return float(total)


def _l1_l2_config(regularizer):
    if not isinstance(
        regularizer,
        (keras.regularizers.L1, keras.regularizers.L2, keras.regularizers.L1L2),
    ):
        return None
    config = regularizer.get_config()
    return float(config.get("l1", 0.0)), float(config.get("l2", 0.0))


def _from_dict(config):
    if "class_name" in config:
        return specs.deserialized(config, keras.regularizers.deserialize,
                                  keras.regularizers.Regularizer, "penalty",
                                  f"give a kind instead, one of {', '.join(_KINDS)}")
    settings = dict(config)
    kind = settings.pop("name", None)
    if kind is None:
        # A Keras regularizer's `get_config()`: its strengths tell its kind.
        kind = "_".join(key for key in ("l1", "l2") if key in settings) or None
    return _build(kind.lower() if isinstance(kind, str) else kind, (), settings, config)


def _build(kind, args, kwargs, spec):
    """The regularizer of a kind, from its strengths given in order or by name."""
    if not isinstance(kind, str) or kind not in _KINDS:
        raise TransferkitError(
            f"Unknown penalty {spec!r}: the kind must be one of "
            f"{', '.join(_KINDS)}, as in 'l2:1e-4'."
        )
    cls, names = _KINDS[kind]
    example = "l1_l2:1e-5,1e-4" if kind == "l1_l2" else f"{kind}:1e-4"
    unknown = [key for key in kwargs if key not in names]
    if unknown:
        raise TransferkitError(
            f"Penalty {spec!r}: {kind} has no strength {unknown[0]!r}; it takes "
            f"{', '.join(names)}, as in '{example}'."
        )
    strengths = dict(zip(names, args))
    twice = [key for key in kwargs if key in strengths]
    if twice:
        raise TransferkitError(f"Penalty {spec!r} gives the {twice[0]} strength twice.")
    strengths.update(kwargs)
    if len(args) > len(names) or len(strengths) != len(names):
        raise TransferkitError(
            f"Penalty {spec!r} needs {len(names)} strength(s) after the colon "
            f"({', '.join(names)}), as in '{example}'."
        )
    return cls(**{name: _strength(value, spec) for name, value in strengths.items()})


def _strength(value, spec):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TransferkitError(
            f"Penalty {spec!r}: strength {value!r} is not a number; "
            "use a value such as 1e-4."
        )
    if not math.isfinite(value) or value < 0:
        raise TransferkitError(
            f"Penalty {spec!r}: strength {value} must be a finite "
            "number >= 0, such as 1e-4."
        )
    return float(value)
