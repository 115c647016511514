"""Learning-rate schedules by name: power, exponential, piecewise, plateau, cosine, 1cycle.

A schedule spec names how the learning rate changes while a phase trains;
the string form is the command line's (lists are separated by `;`, which a
shell needs quoted, or by `/`):

    "constant"                                  the rate as it is (also "none")
    "power:s=1000,c=1"                          lr0 / (1 + step/s)**c
    "exponential:s=2000"                        lr0 * 0.1**(step/s)
    "piecewise:boundaries=100;200,values=1e-3;1e-4;1e-5"
    "plateau:factor=0.5,patience=3"             ReduceLROnPlateau (performance scheduling)
    "cosine:warmup=0.05"                        linear warm-up, then cosine decay
    "1cycle:max_lr=1e-2"                        up to max_lr and back, momentum the other way

The strings are transferkit's one spec grammar (`transferkit.specs`), keyword
settings only; `get` also takes what `Schedule.describe()` returns, and
`Schedule` objects.

`get_schedule` parses and checks a spec; `Schedule.build(learning_rate,
total_steps)` then makes what Keras takes: the optimizer's `learning_rate`
(a float or a `LearningRateSchedule`, evaluated at every step from the
optimizer's iteration count) and the callbacks for `fit` (ReduceLROnPlateau
for "plateau", the momentum cycle of "1cycle"). `lr0` is the learning rate
given to `build`; steps are optimizer steps (batches), and `total_steps`
is `epochs * steps_per_epoch`, which "cosine" and "1cycle" need.

Reading and checking a spec needs no Keras: only `build` imports it, and
the Keras classes it makes live in `transferkit.optim.lr_schedules`
(`PowerDecay`, `OneCycle`) and `transferkit.optim.momentum`
(`MomentumScheduler`).
"""

import dataclasses
import difflib
import math
import numbers
from typing import NamedTuple

from transferkit import specs
from transferkit._lazy import lazy_exports
from transferkit.errors import TransferkitError

_REQUIRED = object()
# name -> {parameter: default}; None defaults are derived from total_steps or lr0.
_PARAMS = {
    "constant": {},
    "power": {"s": None, "c": 1.0},
    "exponential": {"s": None, "rate": 0.1},
    "piecewise": {"boundaries": _REQUIRED, "values": _REQUIRED},
    "plateau": {"factor": 0.5, "patience": 5, "min_lr": 0.0, "monitor": None,
                "min_delta": 1e-4, "cooldown": 0},
    "cosine": {"warmup": 0.0, "alpha": 0.0},
    "1cycle": {"max_lr": None, "final_lr": None, "tail": 0.1, "cycle_momentum": True,
               "max_momentum": 0.95, "min_momentum": 0.85},
}
SCHEDULES = tuple(_PARAMS)
_ALIASES = {"none": "constant", "onecycle": "1cycle", "one_cycle": "1cycle"}
_USAGE = "NAME:KEY=VALUE,KEY=VALUE, such as 'cosine:warmup=0.05' or '1cycle:max_lr=1e-2'"

# Defined here before the Keras classes moved out; importable from here still,
# imported (with Keras) when first read.
__getattr__, __dir__ = lazy_exports(__name__, {
    "PowerDecay": "transferkit.optim.lr_schedules",
    "OneCycle": "transferkit.optim.lr_schedules",
    "OneCycleMomentum": "transferkit.optim.momentum",
    "MomentumScheduler": "transferkit.optim.momentum",
    "momentum_attribute": "transferkit.optim.momentum",
})


class ScheduleParts(NamedTuple):
    """What a built schedule gives: the optimizer's `learning_rate`, and callbacks for `fit`."""

    learning_rate: object
    callbacks: list


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A checked schedule spec: its `name` and `params` (see `get_schedule`).

    `build(learning_rate, total_steps)` makes the Keras objects; `describe()`
    is the JSON-able form, which `get_schedule(**schedule.describe())` takes
    back; `str(schedule)` is the command-line form.
    """

    name: str
    params: dict

    def describe(self):
        """`{"name": ..., **params}`, JSON-able (`None` for derived defaults)."""
        return {"name": self.name, **self.params}

    def __str__(self):
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(
            f"{key}={specs.format_value(value)}" for key, value in self.params.items())

    def needs_total_steps(self):
        """Whether `build` needs `total_steps` (cosine, 1cycle, and power or
        exponential without `s`)."""
        return self.name in ("cosine", "1cycle") or (
            self.name in ("power", "exponential") and self.params["s"] is None)

    def build(self, learning_rate, total_steps=None, monitor="val_loss"):
        """The optimizer's learning rate and the `fit` callbacks for this schedule.

        Args:
            learning_rate: `lr0`, the phase's learning rate, a positive number:
                where the schedule starts (the peak of "cosine"; "piecewise"
                uses its own values).
            total_steps: the number of optimizer steps the phase trains,
                `epochs * steps_per_epoch`; needed by "cosine" and "1cycle",
                and by "power"/"exponential" without `s`. Defaults to `None`.
            monitor: the metric "plateau" watches when its spec names none
                (the recipe's own). Defaults to `"val_loss"`.

        Returns:
            A `ScheduleParts(learning_rate, callbacks)`: pass `learning_rate`
            to the optimizer (a float, or a Keras `LearningRateSchedule`) and
            the callbacks to `fit`.

        Example:

        >>> parts = get_schedule("1cycle:max_lr=1e-2").build(1e-3, total_steps=1000)
        >>> type(parts.learning_rate).__name__, [type(c).__name__ for c in parts.callbacks]
        ('OneCycle', ['MomentumScheduler'])
        """
        lr0 = _positive(learning_rate, "The learning rate")
        if total_steps is not None:
            if (isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral)
                    or total_steps < 1):
                raise TransferkitError(f"total_steps must be an int >= 1, got {total_steps!r}.")
            total_steps = int(total_steps)
        elif self.needs_total_steps():
            raise TransferkitError(
                f"Schedule {self.name!r} needs total_steps (epochs * steps per epoch)"
                + ("." if self.name in ("cosine", "1cycle") else ", or give s=STEPS.")
            )
        p = self.params
        if self.name == "constant":
            return ScheduleParts(lr0, [])
        import keras  # here, not at the top: checking a spec needs no Keras

        from transferkit.optim.lr_schedules import PowerDecay

        schedules = keras.optimizers.schedules
        if self.name == "power":
            s = p["s"] if p["s"] is not None else total_steps / 10
            return ScheduleParts(PowerDecay(lr0, s, p["c"]), [])
        if self.name == "exponential":
            s = p["s"] if p["s"] is not None else total_steps
            return ScheduleParts(schedules.ExponentialDecay(lr0, s, p["rate"]), [])
        if self.name == "piecewise":
            return ScheduleParts(
                schedules.PiecewiseConstantDecay(list(p["boundaries"]), list(p["values"])), [])
        if self.name == "plateau":
            return ScheduleParts(lr0, [keras.callbacks.ReduceLROnPlateau(
                monitor=p["monitor"] or monitor, factor=p["factor"], patience=p["patience"],
                min_lr=p["min_lr"], min_delta=p["min_delta"], cooldown=p["cooldown"])])
        if self.name == "cosine":
            return ScheduleParts(_cosine(lr0, total_steps, p["warmup"], p["alpha"], self), [])
        return self._one_cycle(lr0, total_steps)

    def _one_cycle(self, lr0, total_steps):
        from transferkit.optim.lr_schedules import OneCycle
        from transferkit.optim.momentum import MomentumScheduler, OneCycleMomentum

        p = self.params
        peak = p["max_lr"] if p["max_lr"] is not None else 10 * lr0
        end = p["final_lr"] if p["final_lr"] is not None else lr0 / 100
        if peak < lr0 or end > lr0:
            raise TransferkitError(
                f"Schedule {str(self)!r} with learning rate {lr0:g}: need final_lr <= "
                f"{lr0:g} <= max_lr; give the phase a rate between them."
            )
        if (1 - p["tail"]) * total_steps / 2 < 1:
            raise TransferkitError(
                f"Schedule {str(self)!r} needs more than {total_steps} steps to cycle; "
                "train longer or use another schedule."
            )
        callbacks = []
        if p["cycle_momentum"]:
            callbacks.append(MomentumScheduler(OneCycleMomentum(
                total_steps, low=p["min_momentum"], high=p["max_momentum"], tail=p["tail"])))
        return ScheduleParts(OneCycle(lr0, peak, total_steps, end, p["tail"]), callbacks)


def _cosine(lr0, total_steps, warmup, alpha, schedule):
    import keras

    warmup_steps = round(warmup * total_steps)
    if warmup_steps >= total_steps:
        raise TransferkitError(
            f"Schedule {str(schedule)!r}: the warm-up takes all {total_steps} steps; "
            "use a smaller warmup fraction."
        )
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(lr0, total_steps, alpha=alpha)
    # Warm-up from 0 to lr0, then cosine decay from lr0 to alpha * lr0.
    return keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup_steps, alpha=alpha, warmup_target=lr0,
        warmup_steps=warmup_steps)


def get(identifier):
    """Returns the checked `Schedule` of a schedule identifier.

    Args:
        identifier: one of

            - `None`: the constant rate, `Schedule("constant", {})`;
            - a `Schedule`, returned as it is;
            - a spec string such as `"cosine:warmup=0.05"` (see
              `get_schedule` for the names and their parameters);
            - a dict, what `Schedule.describe()` returns:
              `{"name": "power", "s": 1000, "c": 1.0}`.

    Returns:
        A `Schedule`.

    Example:

    >>> get("power:s=1000") == get({"name": "power", "s": 1000, "c": 1.0})
    True
    >>> get(None).name
    'constant'
    """
    return get_schedule(identifier)


def get_schedule(name="constant", **params):
    """A checked learning-rate schedule spec, ready to `build`.

    Args:
        name: `"constant"` (or `"none"`), `"power"`, `"exponential"`,
            `"piecewise"`, `"plateau"`, `"cosine"` or `"1cycle"`, optionally
            with parameters as in `"power:s=1000,c=1"`; a dict as `describe`
            returns; a `Schedule`; or `None` (constant). Defaults to
            `"constant"`.
        **params: the schedule's parameters (in steps, i.e. batches):

            - power: `s` (defaults to `total_steps / 10`), `c` (1.0):
              `lr0 / (1 + step/s)**c`;
            - exponential: `s` (defaults to `total_steps`), `rate` (0.1):
              `lr0 * rate**(step/s)`;
            - piecewise: `boundaries` (increasing steps) and `values` (one
              more rate than boundaries): the rates themselves, lr0 unused;
            - plateau: `factor` (0.5), `patience` (5 epochs), `min_lr` (0),
              `monitor` (what `build` is given, by default "val_loss"),
              `min_delta` (1e-4), `cooldown` (0): the rate times `factor`
              when `monitor` stops improving;
            - cosine: `warmup` (0: the fraction of the steps warming up
              linearly from 0 to lr0), `alpha` (0: the final rate as a
              fraction of lr0);
            - 1cycle: `max_lr` (10 * lr0), `final_lr` (lr0 / 100), `tail`
              (0.1: the fraction of steps going below lr0),
              `cycle_momentum` (true), `max_momentum` (0.95),
              `min_momentum` (0.85).

    Returns:
        A `Schedule`.

    Example:

    >>> schedule = get_schedule("power:s=1000")
    >>> schedule.describe()
    {'name': 'power', 's': 1000, 'c': 1.0}
    >>> parts = schedule.build(0.01)
    >>> round(float(parts.learning_rate(1000)), 6)
    0.005
    """
    if isinstance(name, Schedule):
        if params:
            raise TransferkitError("Give parameters with a schedule name, not with a Schedule.")
        return name
    if name is None:
        name = "constant"
    if isinstance(name, dict):
        spec = dict(name)
        name = spec.pop("name", None)
        params = _merged(spec, params, "the spec dict")
    if not isinstance(name, str):
        raise TransferkitError(
            f"A schedule is a name such as 'cosine' or '1cycle:max_lr=1e-2', got {name!r}."
        )
    parsed = specs.parse(name, what="schedule", usage=_USAGE, positional=False,
                         require_name=True)
    key, spec_params = _ALIASES.get(parsed.name, parsed.name), parsed.kwargs
    if key not in _PARAMS:
        close = difflib.get_close_matches(key, list(_PARAMS) + list(_ALIASES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TransferkitError(
            f"Unknown schedule {key!r}{hint}; use one of {', '.join(SCHEDULES)}."
        )
    params = _merged(spec_params, params, repr(name))
    defaults = _PARAMS[key]
    unknown = [p for p in params if p not in defaults]
    if unknown:
        valid = ", ".join(defaults) if defaults else "none"
        raise TransferkitError(
            f"Schedule {key!r} has no parameter {unknown[0]!r}; valid: {valid}."
        )
    checked = {}
    for param, default in defaults.items():
        value = params.get(param, default)
        if value is _REQUIRED:
            raise TransferkitError(
                f"Schedule {key!r} needs {param}, e.g. "
                "'piecewise:boundaries=100;200,values=1e-3;1e-4;1e-5'."
            )
        checked[param] = value if value is None else _check(key, param, value)
    _check_together(key, checked)
    return Schedule(key, checked)


def describe(spec):
    """A schedule spec as a JSON-able dict, which `get_schedule` takes back.

    Example:

    >>> describe("exponential:s=500")
    {'name': 'exponential', 's': 500, 'rate': 0.1}
    """
    return get_schedule(spec).describe()


def _merged(first, second, where):
    both = sorted(set(first) & set(second))
    if both:
        raise TransferkitError(f"{', '.join(both)} given both in {where} and as an argument.")
    return {**first, **second}


# parameter -> (check, what it must be)
_CHECKS = {
    "s": (lambda v: _is_number(v) and v > 0, "a number of steps > 0"),
    "c": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "rate": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "boundaries": (lambda v: all(_is_int(b) and b > 0 for b in v)
                   and all(a < b for a, b in zip(v, v[1:])),
                   "increasing whole numbers of steps > 0, separated by ';'"),
    "values": (lambda v: all(_is_number(x) and x > 0 for x in v),
               "learning rates > 0, separated by ';'"),
    "factor": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "patience": (lambda v: _is_int(v) and v >= 0, "a whole number of epochs >= 0"),
    "min_lr": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "monitor": (lambda v: isinstance(v, str) and v, "a logged metric such as val_loss"),
    "min_delta": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "cooldown": (lambda v: _is_int(v) and v >= 0, "a whole number of epochs >= 0"),
    "warmup": (lambda v: _is_number(v) and 0 <= v < 1, "a fraction of the steps in [0, 1)"),
    "alpha": (lambda v: _is_number(v) and 0 <= v <= 1, "a fraction of lr0 in [0, 1]"),
    "max_lr": (lambda v: _is_number(v) and v > 0, "a learning rate > 0"),
    "final_lr": (lambda v: _is_number(v) and v > 0, "a learning rate > 0"),
    "tail": (lambda v: _is_number(v) and 0 < v < 1, "a fraction of the steps in (0, 1)"),
    "cycle_momentum": (lambda v: isinstance(v, bool), "true or false"),
    "max_momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "min_momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
}


def _check(key, param, value):
    if param in ("boundaries", "values") and not isinstance(value, (list, tuple)):
        value = [value]
    if isinstance(value, tuple):
        value = list(value)
    check, meaning = _CHECKS[param]
    if not check(value):
        raise TransferkitError(
            f"Schedule {key!r}: {param}={specs.format_value(value)} should be {meaning}."
        )
    if param == "boundaries":
        return [int(b) for b in value]
    if param == "values":
        return [float(v) for v in value]
    return value


def _check_together(key, params):
    if key == "piecewise" and len(params["values"]) != len(params["boundaries"]) + 1:
        raise TransferkitError(
            f"Schedule 'piecewise' needs one more value than boundaries, got "
            f"{len(params['boundaries'])} boundaries and {len(params['values'])} values."
        )
    if key == "1cycle":
        if params["min_momentum"] > params["max_momentum"]:
            raise TransferkitError(
                "Schedule '1cycle': min_momentum should not exceed max_momentum."
            )
        if params["max_lr"] is not None and params["final_lr"] is not None \
                and params["final_lr"] >= params["max_lr"]:
            raise TransferkitError("Schedule '1cycle': final_lr should be below max_lr.")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return _is_number(value) and float(value).is_integer()


def _positive(value, what):
    if not _is_number(value) or value <= 0:
        raise TransferkitError(f"{what} must be a positive number, got {value!r}.")
    return float(value)
