"""The fine-tuning recipe: phases of training, one history, the best weights kept.

The default recipe has two phases (seeds 001 and 003): the head trains on a
frozen backbone, then the backbone is unfrozen (per a freeze plan) and the
model recompiled with a learning rate ten times smaller, so the large
gradients of a random head do not wreck the pretrained features.
"""

import dataclasses
import math
import numbers
import os
import tempfile

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.features import (
    FeatureCache,
    cache_refusal,
    extract_features,
    feature_extractor,
    head_model,
)
from transferkit.freezing import BATCHNORM_MODES, freeze, parse_plan

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad")


@dataclasses.dataclass
class Phase:
    """One phase of fine-tuning.

    Attributes:
        epochs: the most epochs this phase runs (early stopping may end it
            sooner).
        learning_rate: the optimizer's learning rate.
        unfreeze: the freeze plan for the backbone (`"none"`, `"all"`,
            `"last:N"`, `"fraction:F"`, `"from:LAYER"`, `"blocks:N"`; see
            `transferkit.freezing`).
        optimizer: an optimizer name (`"adam"`, `"sgd"`, ...). Defaults to
            `"adam"`.
        name: a label for logs and plots. Defaults to `"phase<k>"`.
    """

    epochs: int
    learning_rate: float
    unfreeze: object = "none"
    optimizer: str = "adam"
    name: str = ""

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral) \
                or self.epochs < 0:
            raise TransferkitError(f"A phase's epochs must be an int >= 0, got {self.epochs!r}.")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, numbers.Real) \
                or not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 10):
            raise TransferkitError(
                f"A learning rate must be a number in (0, 10), got {self.learning_rate!r}."
            )
        if self.optimizer not in OPTIMIZERS:
            raise TransferkitError(
                f"Unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}."
            )
        parse_plan(self.unfreeze)  # fails early on a bad plan

    def to_dict(self):
        return {"name": self.name, "epochs": int(self.epochs),
                "learning_rate": float(self.learning_rate),
                "unfreeze": str(parse_plan(self.unfreeze)), "optimizer": self.optimizer}


def default_recipe(epochs=(5, 10), learning_rate=1e-3, fine_tune_factor=0.1, unfreeze="all",
                   optimizer="adam"):
    """The two-phase recipe: train the head, then fine-tune with a lower rate.

    Args:
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `(5, 10)`.
            A zero skips a phase.
        learning_rate: phase 1's learning rate. Defaults to `1e-3`.
        fine_tune_factor: phase 2's rate is `learning_rate * fine_tune_factor`.
            Defaults to `0.1`.
        unfreeze: phase 2's freeze plan. Defaults to `"all"`.
        optimizer: optimizer name for both phases. Defaults to `"adam"`.

    Returns:
        A list of two `Phase`s.

    Example:

    >>> [p.learning_rate for p in default_recipe(learning_rate=1e-3)]
    [0.001, 0.0001]
    """
    epochs = tuple(epochs)
    if len(epochs) != 2:
        raise TransferkitError(f"epochs must be two numbers (head, fine-tune), got {epochs!r}.")
    if not isinstance(fine_tune_factor, numbers.Real) or not 0 < fine_tune_factor <= 1:
        raise TransferkitError(
            f"fine_tune_factor must be in (0, 1], got {fine_tune_factor!r}."
        )
    return [
        Phase(epochs[0], learning_rate, "none", optimizer, name="head"),
        Phase(epochs[1], learning_rate * fine_tune_factor, unfreeze, optimizer, name="fine-tune"),
    ]


class FineTuner:
    """Trains a model through a list of phases, keeping the best weights.

    Each phase sets the backbone's trainable part (`transferkit.freeze`),
    recompiles with its own optimizer and learning rate, and trains with
    early stopping on `monitor`. The best weights over all phases are
    checkpointed (Keras' `ModelCheckpoint`, carrying the best value from
    phase to phase) and restored at the end. BatchNormalization layers stay
    in inference mode unless `batchnorm="train"`.

    Args:
        phases: a list of `Phase`. Defaults to `default_recipe()`.
        batch_size: int. Defaults to 32.
        patience: epochs without improvement of `monitor` before a phase
            stops early; `None` turns early stopping off. Defaults to 5.
        monitor: the metric early stopping and the checkpoint watch.
            Defaults to `"val_loss"` (`"loss"` without validation data).
        batchnorm: `"frozen"` (default) or `"train"`.
        blocks: block names for `"blocks:N"` plans (see `transferkit.freeze`).
        loss: a Keras loss. Defaults to one matching the head: sparse
            categorical cross-entropy for softmax, binary cross-entropy for
            sigmoid, mean squared error for a linear head.
        metrics: Defaults to `["accuracy"]` for classification heads.
        checkpoint: path of the `.weights.h5` file for the best weights.
            Defaults to a temporary file, removed after `fit`.
        seed: int seeding Keras (`keras.utils.set_random_seed`), NumPy and
            Python for a repeatable run. Defaults to `None`.
        callbacks: extra Keras callbacks for every phase (on a cached phase
            they see the head model that trains; see `cache`).
        cache: `True` (default), `False`, or a folder. A phase whose
            backbone is frozen (plan `"none"`) on a model without
            augmentation computes the backbone's features once and trains
            the head on them (`transferkit.features`): same updates, one
            forward pass through the backbone instead of one per epoch.
            `True` keeps the features in memory; a folder keeps them in a
            `FeatureCache` there; `False` always trains through the backbone.
            Each frozen phase logs which path it took and why.
        verbose: Keras' `verbose` for `fit`. Defaults to `"auto"`.

    Attributes (after `fit`):
        history_: dict of per-epoch lists across phases (`loss`, `val_loss`,
            ..., plus `phase` (index) and `learning_rate`).
        phases_: a list of dicts per phase: its settings, `first_epoch`,
            `epochs_run`, the freeze summary, and whether it stopped early.
        best_epoch_: the epoch (0-based, over all phases) with the best
            `monitor`; the model holds its weights.
        best_: dict of the metrics at `best_epoch_`.
        monitor_: the metric used.

    Example:

    >>> model = transferkit.build("efficientnet_lite0", 2)  # doctest: +SKIP
    >>> tuner = FineTuner(default_recipe(epochs=(3, 5)), seed=0)  # doctest: +SKIP
    >>> tuner.fit(model, x, y, validation_data=(x_val, y_val))  # doctest: +SKIP
    >>> tuner.best_["val_accuracy"]  # doctest: +SKIP
    """

    def __init__(self, phases=None, *, batch_size=32, patience=5, monitor=None,
                 batchnorm="frozen", blocks=None, loss=None, metrics=None, checkpoint=None,
                 seed=None, callbacks=None, cache=True, verbose="auto"):
        self.phases = phases
        self.batch_size = batch_size
        self.patience = patience
        self.monitor = monitor
        self.batchnorm = batchnorm
        self.blocks = blocks
        self.loss = loss
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.seed = seed
        self.callbacks = callbacks
        self.cache = cache
        self.verbose = verbose

    def fit(self, model, x, y=None, *, validation_data=None, sample_weight=None):
        """Runs the phases on `model` (changed in place); returns `self`.

        Args:
            model: a model with a nested `"backbone"` (`build`, `reuse`).
            x: inputs: a NumPy array, or a `keras.utils.PyDataset` (then
                `y` is `None`).
            y: labels: class indices for softmax and binary heads.
            validation_data: `(x_val, y_val)` or a `PyDataset`. Without it
                early stopping and the checkpoint watch the training loss.
            sample_weight: optional per-sample weights.
        """
        phases = self._checked_phases()
        if self.batchnorm not in BATCHNORM_MODES:
            raise TransferkitError(
                f"batchnorm must be 'frozen' or 'train', got {self.batchnorm!r}."
            )
        if self.patience is not None and (
            isinstance(self.patience, bool) or not isinstance(self.patience, numbers.Integral)
            or self.patience < 1
        ):
            raise TransferkitError(f"patience must be an int >= 1 or None, got {self.patience!r}.")
        if not isinstance(self.cache, (bool, str, os.PathLike)):
            raise TransferkitError(
                f"cache must be True, False or a folder path, got {self.cache!r}."
            )
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        monitor = self.monitor or ("val_loss" if validation_data is not None else "loss")
        loss, metrics = self._loss_and_metrics(model)

        checkpoint, cleanup = self._checkpoint_path()
        history, records = {}, []
        best = None  # the best monitored value so far, carried across phases
        saver = None
        try:
            for index, phase in enumerate(phases):
                if index and os.path.exists(checkpoint):
                    # Each phase starts from the best weights so far.
                    _load_weights(model, checkpoint)
                summary = freeze(model, phase.unfreeze, batchnorm=self.batchnorm,
                                 blocks=self.blocks)
                if self.verbose:
                    print(f"Phase {index + 1}/{len(phases)} ({phase.name}): {phase.epochs} "
                          f"epochs at learning rate {phase.learning_rate:g}; {summary}.")
                model.compile(optimizer=_optimizer(phase), loss=loss, metrics=metrics)
                trained, fit_x, fit_val = model, x, validation_data
                cached = self._cached(model, phase, x, y, validation_data, index, len(phases))
                if cached is not None:
                    trained, fit_x, fit_val = cached
                    trained.compile(optimizer=_optimizer(phase), loss=loss, metrics=metrics)
                # Always checkpoints the full model, whichever model trains.
                saver = _Checkpoint(
                    model, checkpoint, monitor=monitor, save_best_only=True,
                    save_weights_only=True, initial_value_threshold=best, mode=_mode(monitor),
                    verbose=0,
                )
                callbacks = [saver] + list(self.callbacks or [])
                stopper = None
                if self.patience is not None:
                    stopper = keras.callbacks.EarlyStopping(
                        monitor=monitor, mode=_mode(monitor), patience=self.patience,
                        restore_best_weights=False,
                    )
                    callbacks.append(stopper)
                first = len(history.get("loss", []))
                run = trained.fit(
                    fit_x, y, batch_size=None if y is None else self.batch_size,
                    epochs=phase.epochs, validation_data=fit_val,
                    sample_weight=sample_weight, callbacks=callbacks, verbose=self.verbose,
                    shuffle=True,
                ) if phase.epochs else None
                logs = run.history if run is not None else {}
                ran = len(logs.get("loss", []))
                for key, values in logs.items():
                    history.setdefault(key, [None] * first).extend(float(v) for v in values)
                history.setdefault("phase", []).extend([index] * ran)
                history.setdefault("learning_rate", []).extend([float(phase.learning_rate)] * ran)
                for values in history.values():  # keys a phase did not log
                    values.extend([None] * (first + ran - len(values)))
                if saver.best is not None and np.isfinite(saver.best):
                    best = float(saver.best)
                records.append({
                    **phase.to_dict(), "first_epoch": first, "epochs_run": ran,
                    "stopped_early": bool(stopper is not None and stopper.stopped_epoch > 0),
                    "trainable_params": summary.trainable_params,
                    "backbone_params": summary.total_params,
                    "batchnorm_frozen": summary.batchnorm_frozen,
                })
            if monitor not in history:
                raise TransferkitError(
                    f"monitor={monitor!r} is not among the logged metrics "
                    f"({', '.join(k for k in history if k not in ('phase', 'learning_rate'))})."
                )
            if os.path.exists(checkpoint):
                _load_weights(model, checkpoint)
        finally:
            if cleanup:
                cleanup()

        values = history[monitor]
        scores = [np.inf if v is None or not np.isfinite(v) else v for v in values]
        if _mode(monitor) == "max":
            scores = [-s if np.isfinite(s) else np.inf for s in scores]
        self.history_ = history
        self.phases_ = records
        self.monitor_ = monitor
        self.best_epoch_ = int(np.argmin(scores))
        self.best_ = {k: v[self.best_epoch_] for k, v in history.items()}
        return self

    def _cached(self, model, phase, x, y, validation_data, index, count):
        """`(head model, features, validation data on features)` or `None`."""
        if not phase.epochs or parse_plan(phase.unfreeze).kind != "none":
            return None
        reason = "cache=False" if self.cache is False else cache_refusal(model)
        if reason is None and not (isinstance(x, np.ndarray) and y is not None):
            reason = "inputs are not arrays"
        if reason is None and validation_data is not None and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
            and isinstance(validation_data[0], np.ndarray)
        ):
            reason = "validation data is not an (x, y) pair of arrays"
        if reason is not None:
            self._say(f"Phase {index + 1}/{count} ({phase.name}): {reason}: plain path.")
            return None
        extractor = feature_extractor(model)
        store = None if self.cache is True else FeatureCache(self.cache)

        def features(inputs):
            if store is None:
                return extract_features(extractor, inputs, batch_size=self.batch_size,
                                        verbose=self._bar())
            return store.features(extractor, inputs, batch_size=self.batch_size,
                                  verbose=self._bar())

        train = features(x)
        val = None
        if validation_data is not None:
            val = (features(validation_data[0]), validation_data[1])
        where = "in memory" if store is None else f"in {store.directory}"
        self._say(f"Phase {index + 1}/{count} ({phase.name}): backbone frozen, no "
                  f"augmentation: training the head on cached features {where} "
                  f"({'x'.join(map(str, train.shape[1:]))} values per sample).")
        return head_model(model), train, val

    def _say(self, text):
        if self.verbose:
            print(text)

    def _bar(self):
        return 1 if self.verbose in ("auto", 1, True) else 0

    def _checked_phases(self):
        phases = default_recipe() if self.phases is None else list(self.phases)
        if not phases or not all(isinstance(p, Phase) for p in phases):
            raise TransferkitError("phases must be a non-empty list of Phase objects.")
        if not any(p.epochs for p in phases):
            raise TransferkitError("Every phase has 0 epochs; nothing would train.")
        for index, phase in enumerate(phases):
            if not phase.name:
                phase.name = f"phase{index + 1}"
        return phases

    def _loss_and_metrics(self, model):
        activation, units = _head(model)
        if self.loss is not None:
            loss = self.loss
        elif activation == "softmax":
            loss = "sparse_categorical_crossentropy"
        elif activation == "sigmoid":
            loss = "binary_crossentropy"
        else:
            loss = "mean_squared_error"
        if self.metrics is not None:
            metrics = list(self.metrics)
        elif activation == "sigmoid" and units > 1:
            metrics = ["binary_accuracy"]
        else:
            metrics = ["accuracy"] if activation in ("softmax", "sigmoid") else []
        return loss, metrics

    def _checkpoint_path(self):
        if self.checkpoint is not None:
            path = os.fspath(self.checkpoint)
            if not path.endswith(".weights.h5"):
                raise TransferkitError(f"checkpoint must end in .weights.h5, got {path!r}.")
            return path, None
        folder = tempfile.TemporaryDirectory(prefix="transferkit-")
        return os.path.join(folder.name, "best.weights.h5"), folder.cleanup


class _Checkpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` of `model` (the full one), whichever model is fit.

    On a cached phase Keras fits the head model, whose layers are `model`'s
    and the only ones that change: an improvement copies the head's weights
    in memory, and the full model is written once, when the phase ends.
    """

    def __init__(self, model, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._full = model
        self._trained = self._best = self._path = None

    def set_model(self, model):
        self._trained = model
        super().set_model(self if model is not self._full else model)

    def save_weights(self, filepath, overwrite=True):  # called as `self.model.save_weights`
        self._best, self._path = self._trained.get_weights(), filepath

    def on_train_end(self, logs=None):
        if self._best is None:
            return
        current = self._trained.get_weights()
        self._trained.set_weights(self._best)
        self._full.save_weights(self._path, overwrite=True)
        self._trained.set_weights(current)


def _head(model):
    """The output layer's activation name and its number of units."""
    layer = model.layers[-1]
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None) or "linear"
    return name, int(model.outputs[0].shape[-1])


def _load_weights(model, path):
    # The checkpoint also holds the optimizer of the phase that wrote it;
    # only the model's weights matter here (each phase compiles afresh).
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def _mode(monitor):
    name = monitor.removeprefix("val_")
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall")) else "min"


def _optimizer(phase):
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
               "nadam": keras.optimizers.Nadam, "adagrad": keras.optimizers.Adagrad}
    return classes[phase.optimizer](learning_rate=phase.learning_rate)
