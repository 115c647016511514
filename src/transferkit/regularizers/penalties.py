"""Weight penalties from short specs: `"l2:1e-4"`, `"l1:1e-5"`, `"l1_l2:1e-5,1e-4"`.

The specs are written in transferkit's one spec grammar (`transferkit.specs`),
read and checked without Keras by `transferkit.regularizers.penalty_specs`;
this module makes the Keras regularizers.
"""

import keras
import numpy as np

from transferkit import specs
from transferkit.regularizers.penalty_specs import KINDS, parse_penalty

# kind -> the Keras class; its arguments are the kind's strengths (`penalty_specs.KINDS`)
_CLASSES = {
    "l1": keras.regularizers.L1,
    "l2": keras.regularizers.L2,
    "l1_l2": keras.regularizers.L1L2,
}


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
    if isinstance(identifier, dict) and "class_name" in identifier:
        return specs.deserialized(identifier, keras.regularizers.deserialize,
                                  keras.regularizers.Regularizer, "penalty",
                                  f"give a kind instead, one of {', '.join(KINDS)}")
    spec = parse_penalty(identifier)
    return _CLASSES[spec.kind](**spec.strengths)


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
