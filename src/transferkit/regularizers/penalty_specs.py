"""Penalty specs, read and checked without Keras: `"l2:1e-4"`, `"l1_l2:1e-5,1e-4"`.

A penalty spec names a kind (`l1`, `l2`, or `l1_l2`: elastic net) and its
strengths, in transferkit's one spec grammar (`transferkit.specs`). This
module only reads and checks a spec; `transferkit.regularizers.penalties`
makes the Keras regularizer (and reads Keras' own forms: regularizer objects
and `keras.regularizers.serialize` dicts).

Example:

>>> parse_penalty("l1_l2:1e-5,l2=1e-4")
PenaltySpec(kind='l1_l2', strengths={'l1': 1e-05, 'l2': 0.0001})
"""

import dataclasses
import math
import numbers

from transferkit import specs
from transferkit.errors import TransferkitError

# kind -> its strengths, in the order a spec gives them (the Keras class's arguments)
KINDS = {"l1": ("l1",), "l2": ("l2",), "l1_l2": ("l1", "l2")}
EXAMPLES = "'l2:1e-4', 'l1:1e-5' or 'l1_l2:1e-5,1e-4'"
USAGE = f"KIND:STRENGTH[,STRENGTH], such as {EXAMPLES}"


@dataclasses.dataclass(frozen=True)
class PenaltySpec:
    """A checked penalty: its `kind` and its `strengths` (`{"l2": 1e-4}`), floats >= 0."""

    kind: str
    strengths: dict


def parse_penalty(spec):
    """Reads and checks a penalty spec into a `PenaltySpec`.

    Args:
        spec: a string `KIND:STRENGTH[,STRENGTH]`, where `KIND` is `l1`, `l2`
            or `l1_l2` (the L1 strength, then the L2 strength); strengths
            may also be named, as in `"l1_l2:l1=1e-5,l2=1e-4"`. Or a dict: a
            regularizer's `get_config()` (`{"l2": 1e-4}`), or the same with
            its kind (`{"name": "l1_l2", "l1": 1e-5, "l2": 1e-4}`).
            Strengths are non-negative finite numbers.

    Returns:
        A `PenaltySpec`.

    Raises:
        TransferkitError: in one line, naming what is wrong.

    Example:

    >>> parse_penalty({"l2": 1e-4})
    PenaltySpec(kind='l2', strengths={'l2': 0.0001})
    """
    if isinstance(spec, str):
        parsed = specs.parse(spec, what="penalty", usage=USAGE)
        return _checked(parsed.name, parsed.args, parsed.kwargs, spec)
    if isinstance(spec, dict):
        settings = dict(spec)
        kind = settings.pop("name", None)
        if kind is None:
            # A Keras regularizer's `get_config()`: its strengths tell its kind.
            kind = "_".join(key for key in ("l1", "l2") if key in settings) or None
        return _checked(kind.lower() if isinstance(kind, str) else kind, (), settings, spec)
    raise TransferkitError(
        f"Invalid penalty {spec!r}: expected a keras regularizer, a dict such as "
        f"{{'name': 'l2', 'l2': 0.0001}} or a string such as {EXAMPLES}."
    )


def _checked(kind, args, kwargs, spec):
    """The `PenaltySpec` of a kind, from its strengths given in order or by name."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise TransferkitError(
            f"Unknown penalty {spec!r}: the kind must be one of "
            f"{', '.join(KINDS)}, as in 'l2:1e-4'."
        )
    names = KINDS[kind]
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
    return PenaltySpec(kind, {name: _strength(value, spec) for name, value in strengths.items()})


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
