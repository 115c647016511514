"""The momentum of 1cycle: `OneCycleMomentum`, and `MomentumScheduler`, which sets it.

Keras optimizers hold their momentum as a Python float; `MomentumScheduler`
makes a compiled train step read a scheduled one instead, at every batch.
`transferkit.optim.schedules` adds it for `"1cycle"` specs.

Example:

>>> [round(OneCycleMomentum(100)(step), 4) for step in (0, 45, 100)]
[0.95, 0.85, 0.95]
"""

import numbers

import keras
from keras import ops

from transferkit.errors import TransferkitError


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
