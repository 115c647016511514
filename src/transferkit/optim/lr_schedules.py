"""Keras learning-rate schedules that Keras lacks: `PowerDecay` and `OneCycle`.

Both are registered with Keras (package `transferkit`), so an optimizer that
uses one saves and reloads once this module is imported (as
`transferkit.optim.optimizers` does). `transferkit.optim.schedules` makes
them from specs such as `"power:s=1000"` and `"1cycle:max_lr=1e-2"`.

Example:

>>> round(float(PowerDecay(0.1, decay_steps=100)(100)), 6)
0.05
"""

import math
import numbers

import keras
from keras import ops

from transferkit.errors import TransferkitError


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


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return _is_number(value) and float(value).is_integer()
