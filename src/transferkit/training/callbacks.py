"""The fine-tuning recipe as Keras callbacks, for `FineTuner` or your own `model.fit`.

- `BestWeights` keeps the weights of the best epoch over one or several `fit`
  calls and gives them back to the model when each call ends (optionally also
  to a `.weights.h5` file).
- `PhaseSwitch` runs the phases of a recipe (`transferkit.Phase`) in one
  `fit`: from the first epoch of each phase, the phase's freeze plan and
  optimizer (as PyTorch Lightning's `BaseFinetuning` does).
- `recompile` compiles a model again with another optimizer, keeping its loss
  and metrics; unlike `compile`, it also works inside `fit`.

`FineTuner` runs one `fit` per phase with the same pieces (`freeze`,
`Phase.build_optimizer`, `compile`, one `BestWeights` for all phases), which
also gives each phase its own early stopping and trains frozen phases on
cached features.

Example:

>>> import keras, numpy as np
>>> from transferkit.training.phases import Phase
>>> backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu")],
...                             name="backbone")
>>> model = keras.Sequential([keras.Input((4,)), backbone, keras.layers.Dense(1, "sigmoid")])
>>> model.compile("adam", "binary_crossentropy")
>>> x, y = np.random.rand(64, 4), np.random.randint(0, 2, 64)
>>> switch = PhaseSwitch([Phase(2, 1e-2, "none"), Phase(3, 1e-3, "all")])
>>> best = BestWeights("val_loss")
>>> _ = model.fit(x, y, validation_split=0.25, epochs=5, callbacks=[switch, best],
...               verbose=0)
>>> switch.phase, round(float(model.optimizer.learning_rate), 6)
(1, 0.001)
"""

import bisect
import math
import numbers
import os

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.models.freezing import BATCHNORM_MODES, freeze
from transferkit.saving import save_weights
from transferkit.training.phases import Phase

MODES = ("auto", "min", "max")


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best epoch and gives them back when `fit` ends.

    At the end of an epoch where `monitor` beats the best value so far, the
    weights of the model being fit are copied (to host memory); when `fit`
    ends, the model gets the best weights back. The best value carries over
    from one `fit` to the next (like `ModelCheckpoint`'s
    `initial_value_threshold`): with one callback for several `fit` calls, the
    phases of fine-tuning, each call ends with the best weights of all calls
    so far, and a call that never beats them ends with them too.

    Keras' `EarlyStopping(restore_best_weights=True)` restores within one
    `fit` only, and `ModelCheckpoint` writes a file but restores nothing.

    Weights that a `fit` trains and the earlier ones did not (a head trained
    alone, then the whole model) are taken as they are when that `fit`
    starts, so nothing may change them between two calls.

    Args:
        monitor: the metric to watch, a key of `fit`'s logs. Defaults to
            `"val_loss"`. A `fit` that never logs it raises an error at its
            end.
        mode: `"min"`, `"max"` or `"auto"` (default): `"max"` for names with
            `acc`, `auc`, `precision`, `recall` or `f1` (`val_` or not), `"min"`
            otherwise.
        filepath: optional path of a `.weights.h5` file (its folder is
            made if needed), rewritten with the best weights when a `fit`
            ends with a new best (through `transferkit.saving.save_weights`,
            which checks the free disk space first). Defaults to `None`:
            memory only.
        initial_value_threshold: a value `monitor` must beat before an epoch
            counts as the best. Defaults to `None`.
        full_model: the model `filepath` receives the weights of, when `fit`
            trains a smaller model made of its layers (such as a head on
            cached features, `transferkit.head_model`). Defaults to `None`:
            the model being fit.
        verbose: `1` prints a line when the best weights are given back.
            Defaults to `0`.

    Attributes:
        best: the best value of `monitor` so far (`inf` for `"min"`, `-inf`
            for `"max"` before any, unless `initial_value_threshold`).
        best_epoch: the epoch of the best value, as its `fit` numbers them,
            or `None` before any.
        mode: `"min"` or `"max"`, as resolved.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> x, y = np.random.rand(16, 2), np.random.rand(16)
    >>> best = BestWeights("loss")
    >>> first = model.fit(x, y, epochs=3, callbacks=[best], verbose=0)
    >>> model.compile(keras.optimizers.SGD(0.01), "mse")  # a second phase
    >>> second = model.fit(x, y, epochs=3, callbacks=[best], verbose=0)
    >>> best.best == min(first.history["loss"] + second.history["loss"])
    True
    """

    def __init__(self, monitor="val_loss", mode="auto", filepath=None, *,
                 initial_value_threshold=None, full_model=None, verbose=0):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TransferkitError(
                f"monitor must be a metric name such as 'val_loss', got {monitor!r}.")
        if mode not in MODES:
            raise TransferkitError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if filepath is not None:
            if not isinstance(filepath, (str, os.PathLike)):
                raise TransferkitError(f"filepath must be a path or None, got {filepath!r}.")
            filepath = os.fspath(filepath)
            if not filepath.endswith(".weights.h5"):
                raise TransferkitError(f"filepath must end in .weights.h5, got {filepath!r}.")
        if initial_value_threshold is not None and (
            isinstance(initial_value_threshold, bool)
            or not isinstance(initial_value_threshold, numbers.Real)
        ):
            raise TransferkitError(
                "initial_value_threshold must be a number or None, got "
                f"{initial_value_threshold!r}."
            )
        if full_model is not None and not isinstance(full_model, keras.Model):
            raise TransferkitError(
                f"full_model must be a keras.Model or None, got {type(full_model).__name__}.")
        self.monitor = monitor
        self.mode = _mode(monitor) if mode == "auto" else mode
        self.filepath = filepath
        self.full_model = full_model
        self.verbose = verbose
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        # id(variable) -> (variable, its value at the best epoch). The
        # variables are held, so their ids stay theirs.
        self._best_values = {}
        self._behind = False  # the model's weights are not the best ones
        self._new_best = False  # in this fit, so the file is out of date
        self._logged = None  # the keys of a log without `monitor`
        self._found = False

    def on_train_begin(self, logs=None):
        self._new_best = self._found = False
        self._logged = None
        if self._best_values:
            # Weights the earlier calls did not train have not changed since
            # their best epoch: their values now are the best ones.
            for variable in self.model.weights:
                if id(variable) not in self._best_values:
                    self._best_values[id(variable)] = (variable, variable.numpy())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = logs.get(self.monitor)
        if current is None:
            self._logged = list(logs)
            return
        self._found = True
        current = float(current)
        if (current < self.best) if self.mode == "min" else (current > self.best):
            self.best, self.best_epoch = current, epoch
            self._best_values.update(
                (id(variable), (variable, variable.numpy())) for variable in self.model.weights)
            self._behind, self._new_best = False, True
        else:
            self._behind = True

    def on_train_end(self, logs=None):
        if self._logged is not None and not self._found:
            raise TransferkitError(
                f"monitor={self.monitor!r} is not among the logged metrics "
                f"({', '.join(self._logged)})."
            )
        if self._behind and self._best_values:
            for variable, value in self._best_values.values():
                variable.assign(value)
            if self.verbose:
                print(f"Restored the weights of the best epoch ({self.monitor}={self.best:.6g}).")
        self._behind = False
        if self._new_best and self.filepath is not None:
            # Like ModelCheckpoint, which this replaces in FineTuner.
            os.makedirs(os.path.dirname(os.path.abspath(self.filepath)), exist_ok=True)
            save_weights(self.full_model or self.model, self.filepath)

    def best_weights(self, model):
        """The best values of `model.weights`, or `None` before any best.

        Weights no call has trained yet have their current values. With
        `restore_best`, what a resumed run needs (`transferkit.training.resume`).
        """
        if not self._best_values:
            return None
        return [self._best_values[id(v)][1] if id(v) in self._best_values
                else keras.ops.convert_to_numpy(v) for v in model.weights]

    def restore_best(self, model, value, epoch, values, *, give_back=False):
        """Takes the state `best_weights` saved: the best value, its epoch, the values.

        With `give_back`, `model` is set to them, as at the end of a call.
        """
        self.best, self.best_epoch = float(value), epoch
        self._best_values = {id(v): (v, np.asarray(a)) for v, a in zip(model.weights, values)}
        self._behind = False
        if give_back:
            for variable, best in self._best_values.values():
                variable.assign(best)


class PhaseSwitch(keras.callbacks.Callback):
    """Runs the phases of a recipe in one `fit`, each with its freeze plan and optimizer.

    Phase `k` starts at epoch `phases[0].epochs + ... + phases[k-1].epochs`;
    epochs past the last phase continue it. When a phase starts, the model's
    backbone is frozen per the phase's plan (`transferkit.freeze`) and the
    model recompiled (`recompile`) with the phase's optimizer, learning rate,
    schedule and per-block rates (`Phase.build_optimizer`), keeping the loss
    and metrics it was compiled with. The callbacks of a phase's schedule
    (`"plateau"`, `"1cycle"`'s momentum) run for the phase's epochs: this
    callback passes them `fit`'s events (all but the ends of batches).

    Unlike `FineTuner`, which runs one `fit` per phase, an
    `EarlyStopping` ends the whole `fit`, a phase starts from the weights the
    one before ended with (not the best ones: add `BestWeights` to restore
    those at the end), and frozen phases train through the backbone (no
    cached features).

    Put it first among `fit`'s callbacks, so that the others see each phase's
    optimizer from its first epoch. The model must be compiled: the optimizer
    it was compiled with is replaced at the first epoch. Tested on the
    TensorFlow and JAX backends.

    Args:
        phases: a non-empty list of `transferkit.Phase`.
        batchnorm: `"frozen"` (default) keeps BatchNormalization layers in
            inference mode; `"train"` lets them follow the plans (see
            `transferkit.freeze`).
        blocks: block names for `"blocks:N"` plans and `lr_decay` (see
            `transferkit.freeze`). Defaults to `None`.
        monitor: the metric a `"plateau"` schedule watches when its spec
            names none. Defaults to `"val_loss"`.
        verbose: `1` prints a line when a phase starts. Defaults to `0`.

    Attributes:
        phase: the index of the running phase (`None` before the first
            epoch).
        summaries: `{phase index: transferkit.models.freezing.FreezeSummary}`
            of the phases started.

    Example:

    >>> import keras, numpy as np
    >>> from transferkit.training.phases import Phase
    >>> backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)],
    ...                             name="backbone")
    >>> model = keras.Sequential([keras.Input((4,)), backbone, keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> switch = PhaseSwitch([Phase(1, 1e-2, "none"), Phase(1, 1e-3, "all")])
    >>> _ = model.fit(np.ones((8, 4)), np.ones(8), epochs=2, callbacks=[switch], verbose=0)
    >>> [summary.trainable_params for summary in switch.summaries.values()]
    [0, 40]
    """

    def __init__(self, phases, *, batchnorm="frozen", blocks=None, monitor="val_loss",
                 verbose=0):
        super().__init__()
        phases = list(phases) if isinstance(phases, (list, tuple)) else phases
        if not isinstance(phases, list) or not phases or not all(
                isinstance(p, Phase) for p in phases):
            raise TransferkitError(
                f"phases must be a non-empty list of Phase objects, got {phases!r}.")
        if not any(p.epochs for p in phases):
            raise TransferkitError("Every phase has 0 epochs; nothing would train.")
        if batchnorm not in BATCHNORM_MODES:
            raise TransferkitError(f"batchnorm must be 'frozen' or 'train', got {batchnorm!r}.")
        self.phases = phases
        self.batchnorm = batchnorm
        self.blocks = blocks
        self.monitor = monitor
        self.verbose = verbose
        self.phase = None
        self.summaries = {}
        self._starts, self._indices = [], []  # first epoch and index of each phase that runs
        start = 0
        for index, phase in enumerate(phases):
            if phase.epochs:
                self._starts.append(start)
                self._indices.append(index)
                start += phase.epochs
        self._scheduled = []  # the running phase's schedule callbacks

    def on_train_begin(self, logs=None):
        self.phase = None
        self.summaries = {}

    def on_epoch_begin(self, epoch, logs=None):
        index = self._indices[max(bisect.bisect_right(self._starts, epoch) - 1, 0)]
        if index != self.phase:
            self._start(index, epoch)
        for callback in self._scheduled:
            callback.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for callback in self._scheduled:
            callback.on_train_batch_begin(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for callback in self._scheduled:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for callback in self._scheduled:
            callback.on_train_end(logs)
        self._scheduled = []

    def _start(self, index, epoch):
        for callback in self._scheduled:
            callback.on_train_end()
        phase, model = self.phases[index], self.model
        summary = freeze(model, phase.unfreeze, batchnorm=self.batchnorm, blocks=self.blocks)
        optimizer, self._scheduled = phase.build_optimizer(
            model, self.params.get("steps"), monitor=self.monitor, blocks=self.blocks)
        recompile(model, optimizer)
        for callback in self._scheduled:
            callback.set_params(self.params)
            callback.set_model(model)
            callback.on_train_begin()
        self.phase = index
        self.summaries[index] = summary
        if self.verbose:
            name = phase.name or f"phase{index + 1}"
            print(f"Epoch {epoch + 1}: phase {index + 1}/{len(self.phases)} ({name}) at "
                  f"learning rate {phase.learning_rate:g}; {summary}.")


def recompile(model, optimizer):
    """Compiles `model` again with `optimizer`, keeping its loss, metrics and settings.

    Keras reads which weights train when it compiles, so a change of
    `trainable` (a freeze plan) needs a new `compile`. Unlike `compile`, this
    also works inside `fit`, e.g. in a callback's `on_epoch_begin`: the
    optimizer's variables are built at once and a new train function made,
    which `fit` calls from the next batch on. The other compile arguments
    come from `model.get_compile_config()`, so custom losses and metrics must
    be registered Keras objects (`keras.saving.register_keras_serializable`).

    Args:
        model: a compiled Keras model.
        optimizer: the new optimizer: a Keras optimizer or its name.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")])
    >>> model.compile("adam", "mse", metrics=["mae"])
    >>> model.get_layer("out").trainable = False
    >>> recompile(model, keras.optimizers.SGD(1e-3))
    >>> type(model.optimizer).__name__, model.get_compile_config()["metrics"]
    ('SGD', ['mae'])
    """
    config = model.get_compile_config() if isinstance(model, keras.Model) else {}
    if not config:
        raise TransferkitError(
            f"recompile needs a compiled keras.Model, got {getattr(model, 'name', model)!r}: "
            "call compile first.")
    config.pop("optimizer", None)
    try:
        config = keras.saving.deserialize_keras_object(config)
    except Exception as e:  # Keras raises many types for an unknown object.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TransferkitError(
            f"Cannot recompile {model.name!r} with its loss and metrics: {reason}. Register "
            "custom ones with keras.saving.register_keras_serializable."
        ) from e
    model.compile(optimizer=optimizer, **config)
    if not model.optimizer.built:
        # JAX's train step takes the optimizer's variables as inputs: they
        # must exist before the step is traced.
        model.optimizer.build(model.trainable_variables)
    model.make_train_function(force=True)


def _mode(monitor):
    name = monitor.removeprefix("val_")
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) \
        else "min"
