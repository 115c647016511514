"""Constraint specs, read and checked without Keras: `"max_norm:3"`, `"unit_norm"`, ...

Specs (see `transferkit.regularizers.constraints` for what each does):
`"max_norm:C"`, `"unit_norm"`, `"non_neg"`, `"min_max_norm:LOW,HIGH"` with an
optional `rate=R`, and, on the norm constraints, an optional `axis=A` (or
`axis=[0,1,2]`). They are written in transferkit's one spec grammar
(`transferkit.specs`). This module only reads and checks a spec;
`transferkit.regularizers.constraints` makes the Keras constraint (choosing
the axis per weight when the spec names none) and reads Keras' own forms.

Example:

>>> spec = parse_constraint("min_max_norm:0.5,2,axis=[0,1]")
>>> spec.kind, spec.values, spec.axis
('min_max_norm', {'min_value': 0.5, 'max_value': 2.0}, [0, 1])
"""

import dataclasses
import math
import numbers

from transferkit import specs
from transferkit.errors import TransferkitError

EXAMPLES = "'max_norm:3', 'max_norm:3,axis=0', 'unit_norm', 'non_neg' or 'min_max_norm:0.5,2'"
USAGE = f"KIND[:NUMBERS][,axis=A], such as {EXAMPLES}"
# kind -> (positional values, keyword options): the Keras class's arguments
KINDS = {
    "max_norm": (("max_value",), ("axis",)),
    "unit_norm": ((), ("axis",)),
    "non_neg": ((), ()),
    "min_max_norm": (("min_value", "max_value"), ("rate", "axis")),
}
_EXAMPLE = {
    "max_norm": "max_norm:3",
    "unit_norm": "unit_norm",
    "non_neg": "non_neg",
    "min_max_norm": "min_max_norm:0.5,2",
}


@dataclasses.dataclass(frozen=True)
class ConstraintSpec:
    """A checked constraint spec.

    Attributes:
        text: the spec as a string (a dict's in the spec grammar).
        kind: `"max_norm"`, `"unit_norm"`, `"non_neg"` or `"min_max_norm"`.
        values: the numbers, by their Keras argument names, as floats.
        axis: the norm axis (an int or a list of ints), or `None` when the
            spec names none.
    """

    text: str
    kind: str
    values: dict
    axis: object = None

    @property
    def has_axis(self):
        """Whether the kind takes a norm axis (all but `non_neg`)."""
        return "axis" in KINDS[self.kind][1]


def parse_constraint(spec):
    """Reads and checks a constraint spec into a `ConstraintSpec`.

    Args:
        spec: a string: `"max_norm:3"`, `"max_norm:3,axis=0"`, `"unit_norm"`,
            `"non_neg"`, `"min_max_norm:0.5,2"` or
            `"min_max_norm:0.5,2,rate=0.5,axis=[0,1,2]"` (the numbers may
            also be named, as in `"max_norm:max_value=3"`); a dict of the
            kind and the Keras arguments, `{"name": "max_norm",
            "max_value": 3, "axis": 0}`; or a `ConstraintSpec`, returned as
            it is.

    Returns:
        A `ConstraintSpec`.

    Raises:
        TransferkitError: in one line, naming what is wrong.

    Example:

    >>> parse_constraint({"name": "max_norm", "max_value": 3}).text
    'max_norm:max_value=3'
    """
    if isinstance(spec, ConstraintSpec):
        return spec
    if isinstance(spec, str):
        parsed = specs.parse(spec, what="constraint", usage=USAGE)
        return _checked(parsed.name, parsed.args, parsed.kwargs, spec, spec)
    if isinstance(spec, dict):
        settings = dict(spec)
        kind = settings.pop("name", None)
        kind = kind.lower() if isinstance(kind, str) else kind
        text = specs.format_spec(kind, kwargs=settings) if isinstance(kind, str) else repr(spec)
        return _checked(kind, (), settings, spec, text)
    raise TransferkitError(
        f"Invalid constraint {spec!r}: expected a keras.constraints.Constraint (a "
        f"plain function cannot be saved), a dict such as {{'name': 'max_norm', "
        f"'max_value': 3}} or a string such as {EXAMPLES}."
    )


def check_axis(axis, spec):
    """A norm axis as an int or a list of distinct ints (text is read), or one line.

    Example:

    >>> check_axis("[0,1,2]", "max_norm:3"), check_axis([0], "max_norm:3")
    ([0, 1, 2], 0)
    """
    value = axis
    if isinstance(value, str):
        try:
            value = specs.parse_value(value)
        except TransferkitError:
            value = None
    if _is_int(value):
        axes = [value]
    elif isinstance(value, (list, tuple)) and all(_is_int(a) for a in value):
        axes = list(value)
    else:
        axes = None
    if not axes or len(set(axes)) != len(axes):
        raise TransferkitError(
            f"Constraint {spec!r}: invalid axis {axis!r}; use an int or distinct ints such as "
            "axis=0 or axis=[0,1,2]."
        )
    return axes[0] if len(axes) == 1 else axes


def _checked(kind, args, kwargs, spec, text):
    """The `ConstraintSpec` of a kind, from its numbers given in order or by name, checked."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise TransferkitError(
            f"Unknown constraint {spec!r}: the kind must be one of {', '.join(KINDS)}, "
            f"as in {EXAMPLES}."
        )
    positional, keywords = KINDS[kind]
    values = dict(zip(positional, args))
    for key, value in kwargs.items():
        if key not in positional + keywords:
            allowed = ", ".join(f"{k}=" for k in positional + keywords) or "no options"
            raise TransferkitError(
                f"Constraint {spec!r}: unknown option {key!r}; {kind} takes {allowed}."
            )
        if key in values:
            raise TransferkitError(f"Constraint {spec!r} gives {key} twice.")
        values[key] = value
    if len(args) > len(positional) or any(p not in values for p in positional):
        raise TransferkitError(
            f"Constraint {spec!r} needs {len(positional)} number(s) after the colon"
            + (f" ({', '.join(positional)}), as in {_EXAMPLE[kind]!r}." if positional
               else f"; write {_EXAMPLE[kind]!r}.")
        )
    axis = values.pop("axis", None)
    if axis is not None:
        axis = check_axis(axis, spec)
    values = {key: _number(value, spec) for key, value in values.items()}
    _check_values(kind, values, spec)
    return ConstraintSpec(text, kind, values, axis)


def _number(value, spec):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TransferkitError(f"Constraint {spec!r}: {value!r} is not a number.")
    if not math.isfinite(value):
        raise TransferkitError(f"Constraint {spec!r}: {value} must be finite.")
    return float(value)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_values(kind, values, spec):
    if kind == "max_norm" and values["max_value"] <= 0:
        raise TransferkitError(f"Constraint {spec!r}: the maximum norm must be > 0, such as 3.")
    if kind == "min_max_norm":
        low, high = values["min_value"], values["max_value"]
        if not 0 <= low <= high or high <= 0:
            raise TransferkitError(
                f"Constraint {spec!r}: need 0 <= LOW <= HIGH and HIGH > 0, as in "
                "'min_max_norm:0.5,2'."
            )
    if "rate" in values and not 0 < values["rate"] <= 1:
        raise TransferkitError(f"Constraint {spec!r}: rate must be in (0, 1], such as 0.5.")
