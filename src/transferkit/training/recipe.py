"""The fine-tuning recipe: phases of training, one history, the best weights kept.

The default recipe has two phases (seeds 001 and 003): the head trains on a
frozen backbone, then the backbone is unfrozen (per a freeze plan) and the
model recompiled with a learning rate ten times smaller, so the large
gradients of a random head do not wreck the pretrained features.
"""

import contextlib
import dataclasses
import math
import numbers
import os
import tempfile

import keras
import numpy as np

from transferkit.optim import optimizers, schedules
from transferkit.errors import TransferkitError
from transferkit.training.features import (
    AugmentedFeatures,
    FeatureCache,
    augmentation_layer,
    cache_refusal,
    extract_features,
    feature_extractor,
    head_model,
)
from transferkit.models.freezing import BATCHNORM_MODES, freeze, parse_plan
from transferkit.saving import save_weights

OPTIMIZERS = tuple(optimizers.OPTIMIZERS)



@dataclasses.dataclass
class Phase:
    """One phase of fine-tuning.

    Attributes:
        epochs: the most epochs this phase runs (early stopping may end it
            sooner).
        learning_rate: the optimizer's learning rate.
        unfreeze: the freeze plan for the backbone (`"none"`, `"all"`,
            `"last:N"`, `"fraction:F"`, `"from:LAYER"`, `"blocks:N"`; see
            `transferkit.models.freezing`).
        optimizer: an optimizer name or spec with its parameters (`"adam"`,
            `"sgd:momentum=0.9,nesterov=true"`, `"adamw:weight_decay=1e-4"`;
            see `transferkit.optim.optimizers.get_optimizer`). Defaults to `"adam"`.
        name: a label for logs and plots. Defaults to `"phase<k>"`.
        schedule: a learning-rate schedule spec starting from
            `learning_rate` (`"cosine:warmup=0.05"`, `"1cycle:max_lr=1e-2"`,
            `"plateau:factor=0.5,patience=2"`, ...; see
            `transferkit.optim.schedules.get_schedule`). Defaults to `None`
            (constant).
        lr_decay: discriminative fine-tuning: the head trains at the full
            rate, the backbone's last block at `lr_decay` times it, the block
            before at `lr_decay**2`, ... (`transferkit.optim.optimizers.
            block_multipliers`). A float in (0, 1], or `None` (default; one
            rate for all).
    """

    epochs: int
    learning_rate: float
    unfreeze: object = "none"
    optimizer: object = "adam"
    name: str = ""
    schedule: object = None
    lr_decay: object = None

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral) \
                or self.epochs < 0:
            raise TransferkitError(f"A phase's epochs must be an int >= 0, got {self.epochs!r}.")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, numbers.Real) \
                or not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 10):
            raise TransferkitError(
                f"A learning rate must be a number in (0, 10), got {self.learning_rate!r}."
            )
        # Each fails early, with its own message, on a bad spec.
        optimizers.describe(self.optimizer)
        schedules.get_schedule(self.schedule)
        if self.lr_decay is not None and (
            isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real)
            or not 0 < self.lr_decay <= 1
        ):
            raise TransferkitError(f"lr_decay must be in (0, 1] or None, got {self.lr_decay!r}.")
        parse_plan(self.unfreeze)

    def to_dict(self):
        optimizer = optimizers.describe(self.optimizer)
        optimizer.pop("learning_rate", None)  # the phase's own, below
        return {"name": self.name, "epochs": int(self.epochs),
                "learning_rate": float(self.learning_rate),
                "unfreeze": str(parse_plan(self.unfreeze)), "optimizer": optimizer,
                "schedule": schedules.get_schedule(self.schedule).describe(),
                "lr_decay": None if self.lr_decay is None else float(self.lr_decay)}


def default_recipe(epochs=(5, 10), learning_rate=1e-3, fine_tune_factor=0.1, unfreeze="all",
                   optimizer="adam", schedule=None, lr_decay=None):
    """The two-phase recipe: train the head, then fine-tune with a lower rate.

    Args:
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `(5, 10)`.
            A zero skips a phase.
        learning_rate: phase 1's learning rate. Defaults to `1e-3`.
        fine_tune_factor: phase 2's rate is `learning_rate * fine_tune_factor`.
            Defaults to `0.1`.
        unfreeze: phase 2's freeze plan. Defaults to `"all"`.
        optimizer: optimizer name or spec for both phases. Defaults to `"adam"`.
        schedule: learning-rate schedule spec for both phases (each starts it
            afresh from its own rate). Defaults to `None` (constant).
        lr_decay: phase 2's per-block rate ratio (discriminative
            fine-tuning; see `Phase`). Defaults to `None`.

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
        Phase(epochs[0], learning_rate, "none", optimizer, name="head", schedule=schedule),
        Phase(epochs[1], learning_rate * fine_tune_factor, unfreeze, optimizer, name="fine-tune",
              schedule=schedule, lr_decay=lr_decay),
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
            the head on them (`transferkit.training.features`): same updates, one
            forward pass through the backbone instead of one per epoch.
            `True` keeps the features in memory; a folder keeps them in a
            `FeatureCache` there; `False` always trains through the backbone.
            Each frozen phase logs which path it took and why.
        augmented_copies: int >= 0, for frozen phases of a model with
            augmentation. `0` (default) trains them through the backbone (the
            plain path). `K > 0` computes K augmented copies of the training
            features (each batch through the model's `"augment"` layer in
            training mode, then the frozen backbone; at most one copy per
            epoch of the phase) and trains the head on copy `e % K` at epoch
            `e`, shuffled per epoch (`transferkit.training.features.AugmentedFeatures`);
            validation features are computed once, unaugmented. The copies
            sit in memory (`cache=True`) or in temporary files in the cache
            folder, removed after the phase. Fewer distinct augmentations
            than the plain path (K instead of one per epoch), in exchange for
            K forward passes through the backbone instead of one per epoch.
        verbose: Keras' `verbose` for `fit`. Defaults to `"auto"`.

    Attributes (after `fit`):
        history_: dict of per-epoch lists across phases (`loss`, `val_loss`,
            ..., plus `phase` (index) and `learning_rate`: the optimizer's
            rate at the end of each epoch, i.e. a per-step schedule's value
            there, before `ReduceLROnPlateau` lowers it for the next epoch).
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
                 seed=None, callbacks=None, cache=True, augmented_copies=0, verbose="auto"):
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
        self.augmented_copies = augmented_copies
        self.verbose = verbose

    def fit(self, model, x, y=None, *, validation_data=None, sample_weight=None,
            features=None):
        """Runs the phases on `model` (changed in place); returns `self`.

        Args:
            model: a model with a nested `"backbone"` (`build`, `reuse`).
            x: inputs: a NumPy array, or a `keras.utils.PyDataset` (then
                `y` is `None`).
            y: labels: class indices for softmax and binary heads.
            validation_data: `(x_val, y_val)` or a `PyDataset`. Without it
                early stopping and the checkpoint watch the training loss.
            sample_weight: optional per-sample weights.
            features: optional `(train_features, val_features)` computed by
                `feature_extractor(model)` from `x` and the validation
                inputs (`val_features` is `None` without validation data),
                e.g. kept from an earlier run. Frozen phases without
                augmentation train the head on them instead of extracting
                (with `augmented_copies > 0`, the augmented copies are still
                computed; `val_features` serves for validation). Valid only
                while the backbone is unchanged: once a phase with a plan
                other than `"none"` has run, later frozen phases extract
                afresh (per `cache`). Needs arrays for `x` and the
                validation data, and `cache` on.

        Example:

        >>> extractor = feature_extractor(model)  # doctest: +SKIP
        >>> given = (extract_features(extractor, x),
        ...          extract_features(extractor, x_val))  # doctest: +SKIP
        >>> FineTuner(seed=0).fit(model, x, y, validation_data=(x_val, y_val),
        ...                       features=given)  # doctest: +SKIP
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
        if isinstance(self.augmented_copies, bool) or not isinstance(
                self.augmented_copies, numbers.Integral) or self.augmented_copies < 0:
            raise TransferkitError(
                f"augmented_copies must be an int >= 0, got {self.augmented_copies!r}."
            )
        if features is not None:
            features = self._checked_features(model, features, x, validation_data)
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        monitor = self.monitor or ("val_loss" if validation_data is not None else "loss")
        loss, metrics = self._loss_and_metrics(model)

        checkpoint, cleanup = self._checkpoint_path()
        history, records = {}, []
        best = None  # the best monitored value so far, carried across phases
        saver = None
        backbone_trained = False  # given features are stale once it has
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
                steps = _steps_per_epoch(x, y, self.batch_size)
                optimizer, scheduled = self._optimizer(phase, model, steps, monitor)
                model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
                fit_args = dict(
                    x=x, y=y, batch_size=None if y is None else self.batch_size,
                    validation_data=validation_data, sample_weight=sample_weight, shuffle=True,
                )
                trained = model
                with contextlib.ExitStack() as scratch:  # a phase's temporary files
                    cached = self._cached(
                        model, phase, x, y, validation_data, sample_weight, index, len(phases),
                        given=None if backbone_trained else features,
                        stale=backbone_trained and features is not None, scratch=scratch,
                    )
                    if cached is not None:
                        trained, changes = cached
                        fit_args.update(changes)
                        optimizer, scheduled = self._optimizer(phase, model, steps, monitor)
                        trained.compile(optimizer=optimizer, loss=loss, metrics=metrics)
                    # Always checkpoints the full model, whichever model trains.
                    saver = _Checkpoint(
                        model, checkpoint, monitor=monitor, save_best_only=True,
                        save_weights_only=True, initial_value_threshold=best,
                        mode=_mode(monitor), verbose=0,
                    )
                    rates = _LearningRates()
                    callbacks = [saver, rates, *scheduled] + list(self.callbacks or [])
                    stopper = None
                    if self.patience is not None:
                        stopper = keras.callbacks.EarlyStopping(
                            monitor=monitor, mode=_mode(monitor), patience=self.patience,
                            restore_best_weights=False,
                        )
                        callbacks.append(stopper)
                    first = len(history.get("loss", []))
                    run = trained.fit(
                        **fit_args, epochs=phase.epochs, callbacks=callbacks,
                        verbose=self.verbose,
                    ) if phase.epochs else None
                logs = run.history if run is not None else {}
                ran = len(logs.get("loss", []))
                for key, values in logs.items():
                    if key != "learning_rate":  # ReduceLROnPlateau's; ours is below
                        history.setdefault(key, [None] * first).extend(float(v) for v in values)
                history.setdefault("phase", []).extend([index] * ran)
                history.setdefault("learning_rate", []).extend(rates.values[:ran])
                for values in history.values():  # keys a phase did not log
                    values.extend([None] * (first + ran - len(values)))
                if ran and parse_plan(phase.unfreeze).kind != "none":
                    backbone_trained = True
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

    def _cached(self, model, phase, x, y, validation_data, sample_weight, index, count, *,
                given=None, stale=False, scratch):
        """`(head model, changes to fit's arguments)` to train on features, or `None`.

        `given` is fit's `features` while still valid; `scratch` (an
        `ExitStack` closed after the phase) cleans up temporary files.
        """
        if not phase.epochs or parse_plan(phase.unfreeze).kind != "none":
            return None
        label = f"Phase {index + 1}/{count} ({phase.name})"
        reason = ("cache=False" if self.cache is False
                  else cache_refusal(model, allow_augmentation=True))
        if reason is None and not (isinstance(x, np.ndarray) and y is not None):
            reason = "inputs are not arrays"
        if reason is None and validation_data is not None and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
            and isinstance(validation_data[0], np.ndarray)
        ):
            reason = "validation data is not an (x, y) pair of arrays"
        augment = None if reason is not None else augmentation_layer(model)
        hint = ""
        if augment is not None and not self.augmented_copies:
            reason = "augmentation on"
            hint = " (augmented_copies=K would cache K augmented copies)"
        if reason is not None:
            self._say(f"{label}: {reason}: plain path{hint}.")
            return None
        extractor = feature_extractor(model)
        store = None if self.cache is True else FeatureCache(self.cache)
        where = "in memory" if store is None else f"in {store.directory}"
        given_train, given_val = given if given is not None else (None, None)

        def features(inputs):
            if store is None:
                return extract_features(extractor, inputs, batch_size=self.batch_size,
                                        verbose=self._bar())
            return store.features(extractor, inputs, batch_size=self.batch_size,
                                  verbose=self._bar())

        def validation():
            if validation_data is None:
                return None
            val = given_val if given_val is not None else features(validation_data[0])
            return val, validation_data[1]

        note = "; the given features are stale (the backbone has trained since)" \
            if stale else ""
        if augment is None:
            if given_train is not None:
                train, source = given_train, "the given features"
            else:
                train, source = features(x), f"cached features {where}"
            val = validation()
            self._say(f"{label}: backbone frozen, no augmentation: training the head on "
                      f"{source} ({'x'.join(map(str, train.shape[1:]))} values per "
                      f"sample){note}.")
            return head_model(model), {"x": train, "validation_data": val}

        # One copy per epoch at most: epoch e trains on copy e % K.
        copies = min(int(self.augmented_copies), phase.epochs)
        paths = [None] * copies
        if store is not None:
            # Random copies are never reused, so never cache entries: temporary
            # files in a subfolder, removed after the phase.
            os.makedirs(store.directory, exist_ok=True)
            folder = scratch.enter_context(tempfile.TemporaryDirectory(
                prefix="augmented-", suffix=".tmp", dir=store.directory,
                ignore_cleanup_errors=True))
            paths = [os.path.join(folder, f"copy{k}.npy") for k in range(copies)]
            where = f"in temporary files in {store.directory}"
        with _reseeded(augment, None if self.seed is None else [int(self.seed), index]):
            train = [extract_features(extractor, x, batch_size=self.batch_size, path=path,
                                      verbose=self._bar(), augment=augment) for path in paths]
        val = validation()
        data = AugmentedFeatures(
            train, y, sample_weight=sample_weight, batch_size=self.batch_size,
            seed=None if self.seed is None else [int(self.seed), index],
        )
        if given_val is not None and validation_data is not None:
            note += "; validating on the given features"
        self._say(f"{label}: backbone frozen, augmentation on: training the head on {copies} "
                  f"augmented copies of the features {where}, cycled per epoch (copy e mod "
                  f"{copies}){note}.")
        return head_model(model), {
            "x": data, "y": None, "batch_size": None, "sample_weight": None,
            "steps_per_epoch": data.steps_per_epoch, "shuffle": False,
            "validation_data": val, "validation_batch_size": self.batch_size,
        }

    def _checked_features(self, model, features, x, validation_data):
        """`features` as a pair of arrays, checked against the data and `model`'s head."""
        if self.cache is False:
            raise TransferkitError(
                "features= needs the cache on: pass cache=True (or a folder), or leave "
                "features out."
            )
        if not (isinstance(features, (tuple, list)) and len(features) == 2):
            raise TransferkitError(
                "features must be a pair (train_features, val_features); val_features is "
                "None without validation data."
            )
        if not isinstance(x, np.ndarray) or validation_data is not None and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
            and isinstance(validation_data[0], np.ndarray)
        ):
            raise TransferkitError(
                "features= needs x and validation_data's x as NumPy arrays, the inputs the "
                "features were computed from."
            )
        train, val = features
        if train is None:
            raise TransferkitError("features has no train_features: pass (train, val).")
        if (val is None) != (validation_data is None):
            raise TransferkitError(
                "val_features must be given exactly when validation_data is: pass "
                "(train_features, val_features), or (train_features, None) without it."
            )
        width = tuple(head_model(model).inputs[0].shape[1:])
        checked = []
        for name, array, inputs in (("train_features", train, x), (
                "val_features", val, None if validation_data is None else validation_data[0])):
            if array is None:
                checked.append(None)
                continue
            if not isinstance(array, np.ndarray):
                array = np.asarray(array)
            if array.ndim < 1 or len(array) != len(inputs):
                raise TransferkitError(
                    f"{name} has {len(array) if array.ndim else 0} rows for {len(inputs)} "
                    "inputs: compute it from the same inputs with feature_extractor(model)."
                )
            if tuple(array.shape[1:]) != width:
                raise TransferkitError(
                    f"{name} has shape {tuple(array.shape[1:])} per sample but the head takes "
                    f"{width}: compute it with feature_extractor(model)."
                )
            checked.append(array)
        return tuple(checked)

    def _optimizer(self, phase, model, steps, monitor):
        """`(optimizer, callbacks)` for `phase`: its schedule and per-block rates."""
        parts = schedules.get_schedule(phase.schedule).build(
            phase.learning_rate, total_steps=max(phase.epochs * steps, 1), monitor=monitor)
        multipliers = None
        if phase.lr_decay is not None:
            multipliers = optimizers.block_multipliers(model, ratio=phase.lr_decay,
                                                       blocks=self.blocks)
        optimizer = optimizers.get_optimizer(phase.optimizer, parts.learning_rate,
                                             multipliers=multipliers)
        return optimizer, list(parts.callbacks)

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
        save_weights(self._full, self._path)
        self._trained.set_weights(current)


@contextlib.contextmanager
def _reseeded(layer, seed):
    """Seeds `layer`'s random state from `seed` for the block, then restores it.

    Random layers draw their seed when built, not when called, so
    `keras.utils.set_random_seed` at `fit` does not reach a layer built
    earlier; this does. `None` leaves the layer as it is.
    """
    if seed is None:
        yield
        return
    weights = {id(v) for v in layer.weights}
    states = [v for v in layer.variables if id(v) not in weights]  # seed generators
    saved = [keras.ops.convert_to_numpy(v) for v in states]
    for i, (variable, value) in enumerate(zip(states, saved)):
        start = np.random.SeedSequence(list(seed) + [i]).generate_state(1)[0] % 2**31
        variable.assign(np.array([start, 0], dtype=value.dtype))
    try:
        yield
    finally:
        for variable, value in zip(states, saved):
            variable.assign(value)


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


def _steps_per_epoch(x, y, batch_size):
    """Optimizer steps in one epoch: batches of arrays, or a dataset's length."""
    if y is None and hasattr(x, "__len__") and not isinstance(x, np.ndarray):
        return max(len(x), 1)  # a PyDataset: its length is its number of batches
    return max(math.ceil(len(x) / batch_size), 1)


class _LearningRates(keras.callbacks.Callback):
    """Records the optimizer's learning rate at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.values.append(float(keras.ops.convert_to_numpy(rate)))
