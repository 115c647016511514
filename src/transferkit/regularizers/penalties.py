"""Weight penalties from short specs: `"l2:1e-4"`, `"l1:1e-5"`, `"l1_l2:1e-5,1e-4"`."""

import math

import keras
import numpy as np

from transferkit.errors import TransferkitError

_KINDS = {"l1": 1, "l2": 1, "l1_l2": 2}


def get_penalty(spec):
    """Returns a Keras regularizer for a spec, or `None` for `None`.

    Args:
        spec: a `keras.regularizers.Regularizer` (returned as it is), `None`,
            or a string `KIND:STRENGTH[,STRENGTH]` where `KIND` is `l1`, `l2`
            or `l1_l2` (elastic net: the L1 strength, then the L2 strength).
            Strengths are non-negative finite numbers.

    Example:

    >>> get_penalty("l1_l2:1e-5,1e-4").get_config()
    {'l1': 1e-05, 'l2': 0.0001}
    """
    if spec is None or isinstance(spec, keras.regularizers.Regularizer):
        return spec
    if not isinstance(spec, str):
        raise TransferkitError(
            f"Invalid penalty {spec!r}: expected a keras regularizer or a "
            "string such as 'l2:1e-4', 'l1:1e-5' or 'l1_l2:1e-5,1e-4'."
        )
    kind, _, numbers = spec.strip().lower().partition(":")
    if kind not in _KINDS:
        raise TransferkitError(
            f"Unknown penalty {spec!r}: the kind must be one of "
            f"{', '.join(_KINDS)}, as in 'l2:1e-4'."
        )
    strengths = [_strength(s, spec) for s in numbers.split(",")] if numbers else []
    if len(strengths) != _KINDS[kind]:
        example = "l1_l2:1e-5,1e-4" if kind == "l1_l2" else f"{kind}:1e-4"
        raise TransferkitError(
            f"Penalty {spec!r} needs {_KINDS[kind]} strength(s) after the "
            f"colon, as in '{example}'."
        )
    if kind == "l1":
        return keras.regularizers.L1(strengths[0])
    if kind == "l2":
        return keras.regularizers.L2(strengths[0])
    return keras.regularizers.L1L2(l1=strengths[0], l2=strengths[1])


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


def _strength(text, spec):
    try:
        value = float(text)
    except ValueError:
        raise TransferkitError(
            f"Penalty {spec!r}: strength {text.strip()!r} is not a number; "
            "use a value such as 1e-4."
        ) from None
    if not math.isfinite(value) or value < 0:
        raise TransferkitError(
            f"Penalty {spec!r}: strength {text.strip()} must be a finite "
            "number >= 0, such as 1e-4."
        )
    return value
