"""Freeze plans, read and checked without Keras: `"last:20"`, `"blocks:2"`, ...

A plan names the part of a pretrained backbone that is *trainable* while
fine-tuning; everything before it stays frozen. Plans, as strings (the CLI's
`--unfreeze`) or values:

- `"none"`: the whole backbone frozen (phase 1 of the recipe);
- `"all"`: the whole backbone trainable;
- `"last:N"` (or an int `N`): the last N layers that hold weights;
- `"fraction:F"` (or a float `F` in (0, 1]): the last fraction F of them;
- `"from:LAYER"`: the named layer and everything after it;
- `"blocks:N"`: the last N blocks of a catalogue backbone.

The strings are transferkit's one spec grammar (`transferkit.specs`). This
module only reads and checks a plan; `transferkit.models.freezing` applies
it to a model (and checks it against the model's layers).

Example:

>>> parse_plan("last:20")
FreezePlan(kind='last', value=20)
"""

import dataclasses
import numbers

from transferkit import specs
from transferkit.errors import TransferkitError

KINDS = ("none", "all", "last", "fraction", "from", "blocks")
USAGE = "none, all, last:N, fraction:F, from:LAYER or blocks:N"
_EXAMPLE = {"last": "20", "fraction": "0.3", "from": "conv5_block1_out", "blocks": "2"}


@dataclasses.dataclass(frozen=True)
class FreezePlan:
    """A parsed plan: `kind` (one of none/all/last/fraction/from/blocks) and `value`.

    Example:

    >>> str(FreezePlan("blocks", 2)), FreezePlan("blocks", 2).describe()
    ('blocks:2', {'kind': 'blocks', 'value': 2})
    """

    kind: str
    value: object = None

    def __str__(self):
        return self.kind if self.value is None else f"{self.kind}:{self.value}"

    def describe(self):
        """`{"kind": ..., "value": ...}`, JSON-able, which `parse_plan` takes back."""
        return {"kind": self.kind, "value": self.value}


def parse_plan(plan):
    """Reads and checks a freeze plan into a `FreezePlan`.

    Args:
        plan: one of

            - `None` or `False`: `FreezePlan("none")`, the backbone frozen;
            - `True`: `FreezePlan("all")`;
            - a `FreezePlan`, returned as it is;
            - an int `N` (`"last:N"`) or a float `F` in (0, 1]
              (`"fraction:F"`);
            - a spec string: `"none"`, `"all"`, `"last:N"`, `"fraction:F"`,
              `"from:LAYER"` or `"blocks:N"` (see the module docstring);
            - a dict, what `FreezePlan.describe()` returns:
              `{"kind": "last", "value": 20}` (`"name"` may stand for `"kind"`).

    Returns:
        A `FreezePlan`.

    Raises:
        TransferkitError: in one line, for a plan that is not one of these.

    Example:

    >>> parse_plan("last:20")
    FreezePlan(kind='last', value=20)
    >>> parse_plan(0.25)
    FreezePlan(kind='fraction', value=0.25)
    """
    if isinstance(plan, FreezePlan):
        return plan
    if plan is None:
        return FreezePlan("none")
    if isinstance(plan, bool):
        return FreezePlan("all" if plan else "none")
    if isinstance(plan, numbers.Integral):
        return _checked("last", int(plan), plan)
    if isinstance(plan, numbers.Real):
        return _checked("fraction", float(plan), plan)
    if isinstance(plan, dict):
        return _from_dict(plan)
    if not isinstance(plan, str):
        raise TransferkitError(f"A freeze plan is a string like 'last:20'; got {plan!r}.")
    parsed = specs.parse(plan, what="freeze plan", usage=USAGE)
    if parsed.name not in KINDS:
        raise TransferkitError(f"Unknown freeze plan {plan!r}; use {USAGE}.")
    if parsed.kwargs:
        raise TransferkitError(
            f"Freeze plan {plan!r} takes no key=value settings; use {USAGE}."
        )
    # `from:` names a layer: its text as written, whatever it looks like.
    values = parsed.raw_args if parsed.name == "from" else parsed.args
    return _plan(parsed.name, values, plan)


def _from_dict(config):
    settings = dict(config)
    kind = settings.pop("kind", None)
    if kind is None:
        kind = settings.pop("name", None)
    value = settings.pop("value", None)
    if settings or not isinstance(kind, str) or kind.lower() not in KINDS:
        raise TransferkitError(
            f"Invalid freeze plan {config!r}: a dict is {{'kind': KIND, 'value': VALUE}} "
            f"with KIND one of {', '.join(KINDS)}, as in {{'kind': 'last', 'value': 20}}."
        )
    return _plan(kind.lower(), () if value is None else (value,), config)


def _plan(kind, values, plan):
    """The checked plan of a kind and its values (none, or one)."""
    if kind in ("none", "all"):
        if values:
            raise TransferkitError(f"Freeze plan {kind!r} takes no value; got {plan!r}.")
        return FreezePlan(kind)
    if not values:
        raise TransferkitError(
            f"Freeze plan {plan!r} needs a value, e.g. '{kind}:{_EXAMPLE[kind]}'."
        )
    if len(values) > 1:
        raise TransferkitError(
            f"Freeze plan {plan!r} takes one value, e.g. '{kind}:{_EXAMPLE[kind]}'."
        )
    value = values[0]
    if kind == "from":
        if not isinstance(value, str) or not value.strip():
            raise TransferkitError(
                f"Freeze plan {plan!r}: {value!r} is not a layer name; e.g. "
                f"'from:{_EXAMPLE['from']}'."
            )
        return FreezePlan(kind, value.strip())
    whole = kind != "fraction"
    if isinstance(value, bool) or not isinstance(
            value, numbers.Integral if whole else numbers.Real):
        raise TransferkitError(
            f"Freeze plan {plan!r}: {value!r} is not {'a whole' if whole else 'a'} number; "
            f"e.g. '{kind}:{_EXAMPLE[kind]}'."
        )
    return _checked(kind, int(value) if whole else float(value), plan)


def _checked(kind, number, plan):
    if kind == "fraction" and not 0.0 < number <= 1.0:
        raise TransferkitError(f"Freeze plan {plan!r}: the fraction must be in (0, 1].")
    if kind in ("last", "blocks") and number < 1:
        raise TransferkitError(f"Freeze plan {plan!r}: the count must be at least 1.")
    return FreezePlan(kind, number)
