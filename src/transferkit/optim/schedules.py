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
"""

import dataclasses
import difflib
import math
import numbers
from typing import NamedTuple

import keras
from keras import ops

from transferkit import specs
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


# --- Keras schedules that Keras lacks ---------------------------------------

@keras.saving.register_keras_serializable(package="transferkit")
class PowerDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Power scheduling: `initial_learning_rate / (1 + step / decay_steps) ** power`.

    The rate halves after `decay_steps` steps when `power=1` (what Keras'
    `InverseTimeDecay` does with `decay_rate=1`), then falls ever more slowly.

    Args:
        initial_learning_rate: the rate at step 0, a positive float.
        decay_steps: `s`, in optimizer steps, a positive number.
        power: `c`, a positive number. Defaults to `1.0`.
        name: the name of the operations. Defaults to `"PowerDecay"`.

    Example:

    >>> schedule = PowerDecay(0.1, decay_steps=100, power=2.0)
    >>> round(float(schedule(100)), 6)
    0.025
    """

    def __init__(self, initial_learning_rate, decay_steps, power=1.0, name="PowerDecay"):
        super().__init__()
        if not _is_number(decay_steps) or decay_steps <= 0:
            raise TransferkitError(f"decay_steps must be a number > 0, got {decay_steps!r}.")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.power = power
        self.name = name

    def __call__(self, step):
        with keras.name_scope(self.name):
            initial = ops.convert_to_tensor(self.initial_learning_rate)
            step = ops.cast(step, initial.dtype)
            return ops.divide(initial, ops.power(1.0 + step / self.decay_steps, self.power))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "power": self.power, "name": self.name}


@keras.saving.register_keras_serializable(package="transferkit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The 1cycle learning rate: up, back down, then far below the start.

    With `T = total_steps` and `h = (1 - tail) * T / 2`, the rate rises
    linearly from `initial_learning_rate` to `max_learning_rate` over the
    first `h` steps, falls linearly back to `initial_learning_rate` over the
    next `h`, then to `final_learning_rate` over the last `tail * T` steps,
    and stays there.

    Args:
        initial_learning_rate: the rate at the start, a positive float.
        max_learning_rate: the peak, at step `h`.
        total_steps: `T`, the number of optimizer steps of the cycle.
        final_learning_rate: the rate at step `T`. Defaults to
            `initial_learning_rate / 100`.
        tail: the fraction of the steps spent going below the start, in
            (0, 1). Defaults to `0.1`.
        name: the name of the operations. Defaults to `"OneCycle"`.

    Example:

    >>> schedule = OneCycle(0.001, 0.01, total_steps=100)
    >>> [round(float(schedule(step)), 6) for step in (0, 45, 90, 100)]
    [0.001, 0.01, 0.001, 1e-05]
    """

    def __init__(self, initial_learning_rate, max_learning_rate, total_steps,
                 final_learning_rate=None, tail=0.1, name="OneCycle"):
        super().__init__()
        if not _is_int(total_steps) or total_steps < 1:
            raise TransferkitError(f"total_steps must be an int >= 1, got {total_steps!r}.")
        if not _is_number(tail) or not 0 < tail < 1:
            raise TransferkitError(f"tail must be a fraction in (0, 1), got {tail!r}.")
        if final_learning_rate is None:
            final_learning_rate = initial_learning_rate / 100
        self.initial_learning_rate = initial_learning_rate
        self.max_learning_rate = max_learning_rate
        self.total_steps = total_steps
        self.final_learning_rate = final_learning_rate
        self.tail = tail
        self.name = name

    def __call__(self, step):
        with keras.name_scope(self.name):
            start = ops.convert_to_tensor(self.initial_learning_rate)
            peak, end = self.max_learning_rate, self.final_learning_rate
            total = float(self.total_steps)
            half = (1.0 - self.tail) * total / 2
            step = ops.minimum(ops.cast(step, start.dtype), total)
            rising = start + (peak - start) * (step / half)
            falling = peak - (peak - start) * ((step - half) / half)
            annealing = start - (start - end) * ((step - 2 * half) / (total - 2 * half))
            return ops.where(step < half, rising,
                             ops.where(step < 2 * half, falling, annealing))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "max_learning_rate": self.max_learning_rate, "total_steps": self.total_steps,
                "final_learning_rate": self.final_learning_rate, "tail": self.tail,
                "name": self.name}


class OneCycleMomentum:
    """The momentum of 1cycle, opposite to its learning rate: high, low, high.

    Falls linearly from `high` to `low` while the rate rises (the first
    `(1 - tail) * total_steps / 2` steps), rises back to `high` while the rate
    falls, and stays at `high` to the end.

    Example:

    >>> momentum = OneCycleMomentum(100)
    >>> [round(momentum(step), 4) for step in (0, 45, 90, 100)]
    [0.95, 0.85, 0.95, 0.95]
    """

    def __init__(self, total_steps, low=0.85, high=0.95, tail=0.1):
        self.total_steps = total_steps
        self.low = low
        self.high = high
        self.tail = tail

    def __call__(self, step):
        half = (1.0 - self.tail) * self.total_steps / 2
        if step < half:
            return self.high - (self.high - self.low) * step / half
        if step < 2 * half:
            return self.low + (self.high - self.low) * (step - half) / half
        return self.high


class MomentumScheduler(keras.callbacks.Callback):
    """Sets the optimizer's momentum at every batch, from a schedule of the step.

    The momentum is SGD's and RMSprop's `momentum`, or the Adam family's
    `beta_1`. Keras optimizers hold it as a Python float, which a compiled
    train step reads once, when it is traced; for the length of `fit` this
    callback puts a variable in its place, which the step reads at every
    update, and sets it before each batch to `schedule(step)`, where `step`
    is `optimizer.iterations` (as for learning-rate schedules). After `fit`
    the optimizer gets its float back.

    SGD and RMSprop need a momentum above 0 to start with: with 0, Keras
    builds them without the momentum's state.

    Args:
        schedule: a function of the step (an int) returning the momentum,
            a float in [0, 1), such as `OneCycleMomentum(total_steps)`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    >>> scheduler = MomentumScheduler(lambda step: 0.9 - 0.1 * step)
    >>> _ = model.fit(np.ones((4, 2)), np.ones(4), batch_size=1, verbose=0,
    ...               callbacks=[scheduler])
    >>> [round(m, 6) for m in scheduler.history]
    [0.9, 0.8, 0.7, 0.6]
    >>> model.optimizer.momentum
    0.9
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise TransferkitError(
                f"A momentum schedule is a function of the step, got {schedule!r}."
            )
        self.schedule = schedule
        self.history = []  # the momentum set before each batch
        self._attribute = self._original = self._variable = None

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self._attribute = momentum_attribute(optimizer)
        self._original = getattr(optimizer, self._attribute)
        self._variable = _ScheduledMomentum(self._original, name=self._attribute)
        setattr(optimizer, self._attribute, self._variable)
        # A model saved while training (ModelCheckpoint) records the
        # optimizer's own momentum, a float, rather than the variable.
        get_config = optimizer.get_config
        optimizer.get_config = lambda: {**get_config(), self._attribute: self._original}
        # The train step compiled so far read the float; make one that reads
        # the variable.
        self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        # `self.model` brings JAX's training state up to date first.
        optimizer = self.model.optimizer
        momentum = float(self.schedule(int(ops.convert_to_numpy(optimizer.iterations))))
        if not 0.0 <= momentum < 1.0:
            raise TransferkitError(
                f"The momentum schedule gave {momentum!r}; use values in [0, 1).")
        self._variable.assign(momentum)
        self.history.append(momentum)

    def on_train_end(self, logs=None):
        optimizer = self.model.optimizer
        # A train step traced with the variable may be reused by a later
        # `fit`: leave it at the optimizer's own value.
        self._variable.assign(self._original)
        setattr(optimizer, self._attribute, self._original)
        optimizer._untrack_variable(self._variable)
        del optimizer.get_config


def momentum_attribute(optimizer):
    """`"momentum"` or `"beta_1"`: the momentum of an optimizer, or an error."""
    for attribute in ("momentum", "beta_1"):
        value = getattr(optimizer, attribute, None)
        if isinstance(value, keras.Variable):
            raise TransferkitError(
                f"The {attribute} of {optimizer.name!r} is already scheduled; use one "
                "momentum schedule at a time."
            )
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if value == 0:
                raise TransferkitError(
                    f"{type(optimizer).__name__} has {attribute}=0, so it has no momentum "
                    "to cycle: give it one (e.g. 'sgd:momentum=0.9'), or use "
                    "'1cycle:cycle_momentum=false'."
                )
            return attribute
    raise TransferkitError(
        f"{type(optimizer).__name__} has no momentum or beta_1 to cycle: use SGD or "
        "RMSprop with momentum, or an Adam optimizer, or '1cycle:cycle_momentum=false'."
    )


class _ScheduledMomentum(keras.Variable):
    """A momentum that a compiled train step reads at every update.

    SGD and RMSprop choose their update rule with `momentum != 0` and
    `momentum > 0` in Python, which a variable cannot answer inside a
    compiled step; these comparisons answer for the (non-zero) momentum
    the variable replaces, while arithmetic reads its current value.
    """

    def __init__(self, value, name):
        super().__init__(float(value), dtype="float32", trainable=False, name=name)
        self._replaced = float(value)

    def __ne__(self, other):
        return self._replaced != other

    def __gt__(self, other):
        return self._replaced > other


# --- Schedules by name -------------------------------------------------------

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
        schedules = keras.optimizers.schedules
        if self.name == "constant":
            return ScheduleParts(lr0, [])
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
