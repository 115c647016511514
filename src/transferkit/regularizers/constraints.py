"""Weight constraints on a built, pretrained model, in place: `"max_norm:3"`, ...

A constraint is a projection the optimizer applies to a weight after each
update (max-norm regularization keeps every unit's incoming weight vector
inside a ball of radius `c`). Specs:

- `"max_norm:C"`: the norm of each unit's weights at most `C`;
- `"unit_norm"`: each unit's weights rescaled to norm 1;
- `"non_neg"`: negative weights set to 0;
- `"min_max_norm:LOW,HIGH"`: each norm clipped into [LOW, HIGH]; an optional
  `rate=R` moves it only part of the way at each step.

The specs are written in transferkit's one spec grammar (`transferkit.specs`),
read and checked without Keras by `transferkit.regularizers.constraint_specs`;
`get` also takes dicts and constraint objects.

The norm constraints take an optional `axis=A` (or `axis=[0,1,2]`): the axes
summed over, so one norm per remaining index. Without it, the axis is chosen
per weight so that there is one norm per output unit: all axes but the last
for `Dense`, convolution and pointwise kernels (`(h, w, in, out)` -> per
filter, `axis=[0, 1, 2]`; `Dense` -> `axis=0`, Keras' default), all but the
output-channel axis for transposed convolutions (`(h, w, out, in)`), the
spatial axes for depthwise kernels (one norm per channel), one norm per row
of an `Embedding` matrix, and the whole vector for a bias.
"""

import keras

from transferkit import specs
from transferkit._walk import BIAS_CONSTRAINT_SLOTS, KERNEL_CONSTRAINT_SLOTS, weight_slots
from transferkit.errors import TransferkitError
from transferkit.regularizers.audits import build_constraint_audit
from transferkit.regularizers.constraint_specs import (
    EXAMPLES,
    ConstraintSpec,
    check_axis,
    parse_constraint,
)
from transferkit.regularizers.layers import forget_traced_steps, select_layers
from transferkit.regularizers.projections import describe

# Public here before they moved below the audits; still importable from here.
from transferkit.regularizers.layers import constrained_slots  # noqa: F401
from transferkit.regularizers.projections import project, satisfies  # noqa: F401

# kind -> the Keras class; its arguments are the spec's values (`constraint_specs.KINDS`)
_CLASSES = {
    "max_norm": keras.constraints.MaxNorm,
    "unit_norm": keras.constraints.UnitNorm,
    "non_neg": keras.constraints.NonNeg,
    "min_max_norm": keras.constraints.MinMaxNorm,
}
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def get(identifier):
    """Returns a Keras constraint for a constraint identifier, or `None` for `None`.

    Args:
        identifier: one of

            - `None` (no constraint), returned as it is;
            - a `keras.constraints.Constraint`, returned as it is;
            - a spec string: `"max_norm:3"`, `"max_norm:3,axis=0"`,
              `"unit_norm"`, `"non_neg"`, `"min_max_norm:0.5,2"` or
              `"min_max_norm:0.5,2,rate=0.5,axis=[0,1,2]"` (see the module
              docstring); the numbers may also be named, as in
              `"max_norm:max_value=3"`;
            - a dict: the kind and the Keras arguments,
              `{"name": "max_norm", "max_value": 3, "axis": 0}` (a
              constraint's `get_config()` plus its `name`), or
              `keras.constraints.serialize(constraint)`.

            A norm constraint that names no axis gets Keras' default, `0`.

    Returns:
        A `keras.constraints.Constraint`, or `None`.

    Example:

    >>> get("max_norm:3").get_config()
    {'max_value': 3.0, 'axis': 0}
    >>> get({"name": "unit_norm", "axis": [0, 1]}).get_config()
    {'axis': [0, 1]}
    """
    return get_constraint(identifier)


def get_constraint(spec, axis=None):
    """Returns a Keras constraint for a spec, or `None` for `None`.

    Args:
        spec: a `keras.constraints.Constraint` (returned as it is), `None`,
            a string: `"max_norm:3"`, `"max_norm:3,axis=0"`, `"unit_norm"`,
            `"non_neg"`, `"min_max_norm:0.5,2"` or
            `"min_max_norm:0.5,2,rate=0.5,axis=[0,1,2]"` (see the module
            docstring), or a dict (see `get`).
        axis: the axis of a norm constraint whose spec names none: an int or
            a list of ints. Defaults to `None` (Keras' default, `0`; right
            for `Dense` kernels; `constrain` picks one per weight instead).

    Returns:
        A `keras.constraints.Constraint`, or `None`.

    Example:

    >>> get_constraint("max_norm:3").get_config()
    {'max_value': 3.0, 'axis': 0}
    >>> get_constraint("max_norm:3", axis=[0, 1, 2]).get_config()
    {'max_value': 3.0, 'axis': [0, 1, 2]}
    """
    parsed = _parse(spec)
    if not isinstance(parsed, ConstraintSpec):
        return parsed
    if axis is not None:
        axis = check_axis(axis, spec)
    return _build(parsed, axis)


def constraint_for(spec, layer, attribute="kernel_constraint", ndim=None):
    """The constraint `constrain` would put on one weight of `layer`.

    A spec without `axis=` gets the layer's default axis (one norm per output
    unit; see the module docstring); objects are returned as they are.

    Args:
        spec: a constraint spec, dict or `keras.constraints.Constraint`
            (see `get`).
        layer: the layer, built or not.
        attribute: the constraint attribute: `"kernel_constraint"`,
            `"bias_constraint"`, `"depthwise_constraint"`,
            `"pointwise_constraint"` or `"embeddings_constraint"`.
        ndim: the weight's rank, when the layer is not built. Defaults to
            `None` (the rank of `Dense`, `EinsumDense`, `Embedding` and
            convolution weights is known from the layer).

    Example:

    >>> conv = keras.layers.Conv2D(8, 3)
    >>> constraint_for("max_norm:3", conv).get_config()
    {'max_value': 3.0, 'axis': [0, 1, 2]}
    """
    parsed = _parse(spec)
    if not isinstance(parsed, ConstraintSpec):
        return parsed
    if parsed.axis is not None or not parsed.has_axis:
        return _build(parsed, None)
    ndim = ndim if ndim is not None else _weight_ndim(layer, attribute)
    if ndim is None:
        raise TransferkitError(
            f"Cannot tell the default axis of {parsed.text!r} for a "
            f"{type(layer).__name__}; give it in the spec, e.g. '{parsed.kind}:...,axis=0'."
        )
    return _build(parsed, default_axis(layer, attribute, ndim))


def default_axis(layer, attribute, ndim):
    """The norm axes giving one norm per output unit of a weight (module docstring).

    Example:

    >>> default_axis(keras.layers.Dense(3), "kernel_constraint", 2)
    0
    """
    if attribute == "bias_constraint" or ndim <= 1:
        return 0
    if attribute == "embeddings_constraint":
        axes = [ndim - 1]
    elif attribute == "depthwise_constraint":
        axes = list(range(ndim - 2))
    elif attribute == "kernel_constraint" and isinstance(layer, _TRANSPOSED):
        axes = [i for i in range(ndim) if i != ndim - 2]
    else:
        axes = list(range(ndim - 1))
    return axes[0] if len(axes) == 1 else axes


def constrain(model, kernel=None, bias=None, layers=None, *, apply_now=False):
    """Adds weight constraints to a built model, keeping every weight as it is.

    Like penalties, constraints are read when a layer is built: setting
    `layer.kernel_constraint` on a built model changes only its config, and
    the optimizer, which applies `variable.constraint` after each update,
    never sees it. This sets the constraint on the variable (what the
    optimizer applies) *and* on the layer (what `get_config` saves), in
    place, so the weights stay bit for bit and a saved `.keras` file reloads
    with the constraint.

    A constraint is applied after each optimizer update, not before: until
    the first training step the pretrained weights are as they were, and may
    break it. `apply_now=True` projects them at once. Frozen weights are not
    updated, so their constraints apply only once they are unfrozen (and
    `apply_now=True` projects them too).

    Args:
        model: a built Keras model (for instance from `keras.applications`).
        kernel: constraint for kernel-like weights (`Dense`, `EinsumDense`,
            convolution, depthwise and pointwise kernels, `Embedding`
            matrices): a spec such as `"max_norm:3"` or a
            `keras.constraints.Constraint` (used as it is for every weight).
            Norm specs without `axis=` get one norm per output unit of each
            weight (the module docstring says which axes). Defaults to
            `None` (left unchanged).
        bias: constraint for biases, same forms (a norm spec constrains the
            norm of the whole bias vector). Defaults to `None`.
        layers: which layers to constrain: a regular expression searched in
            each layer's qualified name (`"backbone/conv5_.*"`), a layer class,
            or a tuple of classes. Defaults to `None` (every layer).
        apply_now: whether to project the current weights onto their
            constraints now, instead of at the next update. Defaults to
            `False` (weights left bit for bit).

    Returns:
        A `ConstraintAudit` of the constraints set: for each weight its
        constraint, whether the optimizer applies it (frozen weights: not
        yet), whether it is saved, and whether the current weights already
        satisfy it.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    >>> report = constrain(model, kernel="max_norm:3")
    >>> model.layers[0].kernel.constraint.get_config()
    {'max_value': 3.0, 'axis': 0}
    >>> print(report.entries[0].constraint)
    max_norm(3, axis=0)
    """
    requested = {"kernel": _parse(kernel), "bias": _parse(bias)}
    if all(r is None for r in requested.values()):
        raise TransferkitError(
            f"Nothing to apply: give kernel or bias a constraint, e.g. kernel='max_norm:3' "
            f"(specs: {EXAMPLES})."
        )
    if not isinstance(model, keras.Model) or not model.built:
        raise TransferkitError(
            f"{getattr(model, 'name', model)!r} is not a built Keras model: build it (or "
            "call it on data) before constraining, so that its weights exist."
        )
    slots = []
    for name, layer, saved in select_layers(model, layers):
        slots += _apply(name, layer, saved, requested, apply_now)
    if not slots:
        raise TransferkitError(
            f"No layer matched by layers={layers!r} has a kernel or bias to constrain; "
            "check the pattern against the model's layer names."
        )
    forget_traced_steps(model)
    return build_constraint_audit(model, slots)


def _apply(name, layer, saved, requested, apply_now):
    slots = []
    tables = (
        ("kernel", weight_slots(layer, KERNEL_CONSTRAINT_SLOTS)),
        ("bias", weight_slots(layer, BIAS_CONSTRAINT_SLOTS)),
    )
    for kind, table in tables:
        spec = requested[kind]
        if spec is None:
            continue
        for attribute, variable in table:
            constraint = constraint_for(spec, layer, attribute, ndim=len(variable.shape))
            _check_fits(constraint, variable, name)
            # The optimizer reads the variable's constraint; `get_config`
            # writes the layer's.
            variable.constraint = constraint
            setattr(layer, attribute, constraint)
            if apply_now:
                variable.assign(constraint(variable))
            slots.append((name, layer, attribute, variable, saved))
    return slots


def _check_fits(constraint, variable, name):
    axis = getattr(constraint, "axis", None)
    if axis is None:
        return
    ndim = len(variable.shape)
    for a in axis if isinstance(axis, (list, tuple)) else [axis]:
        if not -ndim <= a < ndim:
            raise TransferkitError(
                f"{describe(constraint)} does not fit {name}.{variable.name} of shape "
                f"{tuple(variable.shape)}: axis {a} is out of range; leave axis out for "
                "the per-unit default, or restrict layers=."
            )


# ------------------------------------------------------------------- building


def _parse(spec):
    """A `ConstraintSpec` for a spec, the Keras constraint for Keras' forms, or `None`."""
    if spec is None or isinstance(spec, keras.constraints.Constraint):
        return spec
    if isinstance(spec, dict) and "class_name" in spec:
        return specs.deserialized(spec, keras.constraints.deserialize,
                                  keras.constraints.Constraint, "constraint",
                                  f"give a kind instead, one of {', '.join(_CLASSES)}")
    return parse_constraint(spec)


def _build(parsed, axis):
    """The Keras constraint of a `ConstraintSpec`; `axis` where the spec names none."""
    options = dict(parsed.values)
    if parsed.has_axis:
        chosen = parsed.axis if parsed.axis is not None else axis
        if chosen is not None:
            options["axis"] = chosen
    return _CLASSES[parsed.kind](**options)


def _weight_ndim(layer, attribute):
    """The rank of a not yet built layer's weight, where the layer tells it."""
    if attribute == "bias_constraint":
        return 1
    if isinstance(layer, (keras.layers.Dense, keras.layers.Embedding)):
        return 2
    if isinstance(layer, keras.layers.EinsumDense):
        kernel = layer.equation.split("->")[0].split(",")[-1]
        return len(kernel.strip())
    rank = getattr(layer, "rank", None)
    if isinstance(rank, int):
        return rank + 2
    return None
