"""What a weight constraint does to a weight, computed with NumPy, and its short name.

Kept apart from `constraints` so that the audits, which check constraints,
and `constrain`, which makes the audits, both import it.
"""

import keras
import numpy as np


def describe(constraint):
    """A short name for a constraint, e.g. `max_norm(3, axis=[0, 1, 2])`.

    Example:

    >>> describe(keras.constraints.MaxNorm(3, axis=[0, 1, 2]))
    'max_norm(3, axis=[0, 1, 2])'
    """
    config = constraint.get_config() if isinstance(constraint, keras.constraints.Constraint) else {}
    axis = _axis_text(config.get("axis"))
    if isinstance(constraint, keras.constraints.MaxNorm):
        return f"max_norm({config['max_value']:g}, axis={axis})"
    if isinstance(constraint, keras.constraints.UnitNorm):
        return f"unit_norm(axis={axis})"
    if isinstance(constraint, keras.constraints.NonNeg):
        return "non_neg"
    if isinstance(constraint, keras.constraints.MinMaxNorm):
        rate = "" if config["rate"] == 1 else f", rate={config['rate']:g}"
        return f"min_max_norm({config['min_value']:g}, {config['max_value']:g}{rate}, axis={axis})"
    return getattr(constraint, "__name__", type(constraint).__name__)


def project(constraint, weight):
    """The projection of a weight array onto a constraint, computed with NumPy.

    The four Keras norm and sign constraints are evaluated from their
    configs, in float64, independently of Keras; any other constraint is
    called on the weight.

    Example:

    >>> project(keras.constraints.NonNeg(), [[-1.0, 2.0]]).tolist()
    [[0.0, 2.0]]
    """
    w = np.asarray(keras.ops.convert_to_numpy(weight), dtype=np.float64)
    if isinstance(constraint, keras.constraints.NonNeg):
        return np.maximum(w, 0.0)
    kinds = (keras.constraints.MaxNorm, keras.constraints.UnitNorm, keras.constraints.MinMaxNorm)
    if not isinstance(constraint, kinds):
        return np.asarray(keras.ops.convert_to_numpy(constraint(weight)), dtype=np.float64)
    config = constraint.get_config()
    axis = config["axis"]
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    norms = np.sqrt(np.square(w).sum(axis=axis, keepdims=True))
    if isinstance(constraint, keras.constraints.UnitNorm):
        desired = np.ones_like(norms)
    elif isinstance(constraint, keras.constraints.MaxNorm):
        desired = np.clip(norms, 0.0, config["max_value"])
    else:
        rate = config["rate"]
        clipped = np.clip(norms, config["min_value"], config["max_value"])
        desired = rate * clipped + (1 - rate) * norms
    return w * desired / (keras.config.epsilon() + norms)


def satisfies(constraint, weight, rtol=1e-4, atol=1e-6):
    """Whether projecting `weight` onto `constraint` leaves it (nearly) unchanged.

    Args:
        constraint: a `keras.constraints.Constraint`.
        weight: a weight array or variable.
        rtol: relative tolerance. Defaults to `1e-4`.
        atol: absolute tolerance. Defaults to `1e-6`.

    Example:

    >>> satisfies(keras.constraints.MaxNorm(3), [[1.0], [2.0]])
    True
    """
    w = np.asarray(keras.ops.convert_to_numpy(weight), dtype=np.float64)
    return bool(np.allclose(project(constraint, w), w, rtol=rtol, atol=atol))


def _axis_text(axis):
    if isinstance(axis, (list, tuple)):
        return "[" + ", ".join(str(a) for a in axis) + "]"
    return str(axis)
