"""The fine-tuning recipe: phases of training, one history, the best weights kept.

The default recipe has two phases (seeds 001 and 003): the head trains on a
frozen backbone, then the backbone is unfrozen (per a freeze plan) and the
model recompiled with a learning rate ten times smaller, so the large
gradients of a random head do not wreck the pretrained features.
"""

import contextlib
import math
import numbers
import os
import sys
import tempfile

import keras
import numpy as np

from transferkit.data.buckets import LengthBuckets, is_token_ids
from transferkit.data.mixing import MixedBatches, Mixing
from transferkit.data.stream import Batches, EvenBatches, ImageFiles, batch_split
from transferkit.errors import TransferkitError
from transferkit.models.freezing import BATCHNORM_MODES, freeze, parse_plan
from transferkit.models.heads import default_loss, default_metrics, output_head
from transferkit.progress import is_quiet
from transferkit.training.callbacks import BestWeights
from transferkit.training.features import (
    AugmentedFeatures,
    FeatureCache,
    augmentation_layer,
    cache_refusal,
    extract_features,
    feature_extractor,
    head_model,
)
from transferkit.training.metrics import metric_for
from transferkit.training.phases import OPTIMIZERS, Phase, default_recipe  # noqa: F401


class FineTuner:
    """Trains a model through a list of phases, keeping the best weights.

    Each phase sets the backbone's trainable part (`transferkit.freeze`),
    compiles with its own optimizer and learning rate
    (`Phase.build_optimizer`), and trains with early stopping on `monitor`.
    One `BestWeights` callback watches all phases: it carries the best value
    from phase to phase, each phase starts from the best weights so far, and
    the model ends with the best of all. BatchNormalization layers stay in
    inference mode unless `batchnorm="train"`. To run the phases inside your
    own `model.fit`, use the callbacks of `transferkit.training.callbacks`
    (`PhaseSwitch`, `BestWeights`).

    Args:
        phases: a list of `Phase`. Defaults to `default_recipe()`.
        batch_size: int. Defaults to 32.
        patience: epochs without improvement of `monitor` before a phase
            stops early; `None` turns early stopping off. Defaults to 5.
        monitor: the metric early stopping and the checkpoint watch;
            `"val_macro_f1"` adds `transferkit.training.metrics.MacroF1` to
            the compiled metrics.
            Defaults to `"val_loss"` (`"loss"` without validation data).
        batchnorm: `"frozen"` (default) or `"train"`.
        blocks: block names for `"blocks:N"` plans (see `transferkit.freeze`).
        loss: a Keras loss. Defaults to one matching the head: sparse
            categorical cross-entropy for softmax, binary cross-entropy for
            sigmoid, mean squared error for a linear head.
        metrics: Defaults to `["accuracy"]` for classification heads.
        checkpoint: path of a `.weights.h5` file that receives the best
            weights (of the whole model) when a phase ends with a new best.
            Defaults to `None`: they are kept in memory only.
        seed: int seeding Keras (`keras.utils.set_random_seed`), NumPy and
            Python for a repeatable run. Defaults to `None`.
        callbacks: extra Keras callbacks for every phase (on a cached phase
            they see the head model that trains; see `cache`). A callback with a
            `set_phase(index, phase, first_epoch)` method is told, before
            each phase's `fit`, the phase's index, its `Phase`, and the
            epoch over all phases (0-based) that its `fit` counts as 0
            (the live logs of `transferkit.training.tracking`).
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
        mixing: a `transferkit.data.mixing.Mixing` (MixUp and/or CutMix,
            `Augmentation.mixing()`), for softmax heads: each training batch
            is mixed in the data pipeline (`MixedBatches`, seeded per batch
            from `(seed, phase, batch index)`), its labels soft one-hot, its
            sample weights mixed alike; the loss is then categorical
            cross-entropy (unless `loss` is given), the validation labels
            one-hot (a validation `PyDataset` must serve them so), accuracy
            and `MacroF1` take them as they are. Frozen phases then train
            through the backbone on mixed images (the features of mixed images
            are not mixed features: no cache, no `augmented_copies`).
            Needs `x` as an array or `ImageFiles`. Defaults to `None`.
        balanced: serve each epoch's `n` training samples drawn with
            replacement, every class equally likely
            (`transferkit.data.sampling`), seeded per epoch; `y` holds
            class indices, `x` an array, `ImageFiles` or token ids (cached
            features are drawn alike). Defaults to `False`.
        verbose: Keras' `verbose` for `fit`. Defaults to `"auto"`.
        partial: a `transferkit.training.resume.PartialRun`: a checkpoint
            after every epoch in its folder, and, when `load()` found one, the
            run continues from it (finished phases skipped). Each epoch is
            then seeded from `(seed, phase, epoch)` and arrays are served by
            a `PyDataset` shuffled per epoch, so that a resumed run draws the
            same randomness as an uninterrupted one. Defaults to `None`.

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
                 seed=None, callbacks=None, cache=True, augmented_copies=0, mixing=None,
                 balanced=False, verbose="auto", partial=None):
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
        self.mixing = mixing
        self.balanced = balanced
        self.verbose = verbose
        self.partial = partial

    def fit(self, model, x, y=None, *, validation_data=None, sample_weight=None,
            features=None):
        """Runs the phases on `model` (changed in place); returns `self`.

        Args:
            model: a model with a nested `"backbone"` (`build`, `reuse`).
            x: inputs: a NumPy array, images streamed from their files
                (`transferkit.data.stream.ImageFiles`: served shuffled per
                epoch, decoded while the model computes, never all in
                memory), or a `keras.utils.PyDataset` (then `y` is `None`).
            y: labels: class indices for softmax and binary heads.
            validation_data: `(x_val, y_val)` (`x_val` an array or an
                `ImageFiles`) or a `PyDataset`. Without it
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
        self._check_settings()
        self._check_sampling(model, x, y)
        if self.mixing is not None:
            validation_data = _one_hot_labels(validation_data, model.outputs[0].shape[-1])
        if features is not None:
            features = self._checked_features(model, features, x, validation_data)
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        monitor = self.monitor or ("val_loss" if validation_data is not None else "loss")
        loss, metrics = self._loss_and_metrics(model, monitor)
        # Batches padded to split evenly over the devices (`_evened`) weigh
        # their padding 0: the metrics must read the weights.
        split = batch_split()
        metrics = {"weighted_metrics" if split[0] > 1 else "metrics": metrics}
        # Whichever model a phase fits (the head on cached features, or all
        # of it), the checkpoint file holds the whole model.
        best = BestWeights(monitor, filepath=self._checkpoint_path(), full_model=model)
        steps = _steps_per_epoch(x, y, self.batch_size)
        history, records = {}, []
        backbone_trained = False  # given features are stale once it has
        saved = {}  # phase index -> its state in the checkpoint resumed from
        if self.partial is not None:
            self.partial.total = sum(p.epochs for p in phases)
            saved = self.partial.restore(model, best)
        for index, phase in enumerate(phases):
            summary = freeze(model, phase.unfreeze, batchnorm=self.batchnorm, blocks=self.blocks)
            done = saved.get(index, {})
            if done.get("done"):  # finished before the interruption
                self._say(f"Phase {index + 1}/{len(phases)} ({phase.name}): finished before "
                          f"the interruption ({self.partial.folder}).")
                first, ran = _extend_history(history, done["logs"], index, done["rates"])
                backbone_trained |= bool(ran) and parse_plan(phase.unfreeze).kind != "none"
                records.append(self._record(phase, first, ran, done["stopped_early"], summary))
                continue
            start = len(done.get("logs", {}).get("loss", []))  # epochs run before
            if start:
                self._say(f"Resuming phase {index + 1}/{len(phases)} ({phase.name}) at epoch "
                          f"{start + 1}/{phase.epochs} from {self.partial.folder}.")
            self._say(f"Phase {index + 1}/{len(phases)} ({phase.name}): {phase.epochs} epochs "
                      f"at learning rate {phase.learning_rate:g}; {summary}.")
            optimizer, scheduled = phase.build_optimizer(model, steps, monitor=monitor,
                                                         blocks=self.blocks)
            model.compile(optimizer=optimizer, loss=loss, **metrics)
            trained, data = model, dict(
                x=x, y=y, batch_size=None if y is None else self.batch_size,
                validation_data=validation_data, sample_weight=sample_weight, shuffle=True,
            )
            rates, stopper = _LearningRates(), self._stopper(monitor, best.mode)
            with contextlib.ExitStack() as scratch:  # a phase's temporary files
                cached = self._cached(
                    model, phase, x, y, validation_data, sample_weight, index, len(phases),
                    given=None if backbone_trained else features,
                    stale=backbone_trained and features is not None, scratch=scratch,
                )
                if cached is not None:
                    trained, changes = cached
                    data.update(changes)
                    optimizer, scheduled = phase.build_optimizer(model, steps, monitor=monitor,
                                                                 blocks=self.blocks)
                    trained.compile(optimizer=optimizer, loss=loss, **metrics)
                callbacks = [rates, *scheduled, *(self.callbacks or []),
                             *([stopper] if stopper else []), best]
                logs = {}
                seed = self.seed if self.partial is None else self.partial.seed
                data = _streamed(data, None if seed is None else [int(seed), index], trained,
                                 balanced=self.balanced, mixing=self.mixing,
                                 num_classes=model.outputs[0].shape[-1])
                if self.partial is not None and phase.epochs:
                    checkpoint = self.partial.callback(
                        model, index, phase, best=best, rates=rates, stopper=stopper,
                        scheduled=scheduled)
                    callbacks.append(checkpoint)  # last: it reads what the others decided
                    logs = checkpoint.logs  # the epochs before the interruption, then these
                    data = self.partial.data(data, index, start)
                data = _evened(data, split, None if seed is None else [int(seed), index])
                self._tell_phase(index, phase, first=len(history.get("loss", [])))
                run = trained.fit(**data, epochs=phase.epochs, initial_epoch=start,
                                  callbacks=callbacks, verbose=self._fit_verbose()) \
                    if phase.epochs else None
            if self.partial is None and run is not None:
                logs = run.history
            first, ran = _extend_history(history, logs, index, rates.values)
            backbone_trained |= bool(ran) and parse_plan(phase.unfreeze).kind != "none"
            records.append(self._record(
                phase, first, ran, stopper is not None and stopper.stopped_epoch > 0, summary))
        self._keep_results(history, records, monitor, best.mode)
        return self

    def _tell_phase(self, index, phase, first):
        """Tells the callbacks with a `set_phase` which phase runs, and its first epoch."""
        for callback in self.callbacks or []:
            if hasattr(callback, "set_phase"):
                callback.set_phase(index, phase, first)

    @staticmethod
    def _record(phase, first, ran, stopped_early, summary):
        """The entry of `phases_` for one phase."""
        return {
            **phase.to_dict(), "first_epoch": first, "epochs_run": ran,
            "stopped_early": bool(stopped_early),
            "trainable_params": summary.trainable_params,
            "backbone_params": summary.total_params,
            "batchnorm_frozen": summary.batchnorm_frozen,
        }

    def _check_settings(self):
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
        if self.mixing is not None and not isinstance(self.mixing, Mixing):
            raise TransferkitError(
                f"mixing must be a transferkit.data.mixing.Mixing or None, got {self.mixing!r}."
            )
        if not isinstance(self.balanced, bool):
            raise TransferkitError(f"balanced must be True or False, got {self.balanced!r}.")

    def _check_sampling(self, model, x, y):
        """Mixing needs a softmax head and images; both need inputs this tuner serves."""
        if self.mixing is not None:
            if output_head(model).activation != "softmax":
                raise TransferkitError(
                    f"mixing (MixUp/CutMix/AugMix) serves one-hot labels: it needs a softmax "
                    "head, "
                    f"not {output_head(model).activation!r}."
                )
            if y is None or np.ndim(y) != 1 or not _is_array(x) or len(x.shape) != 4:
                raise TransferkitError(
                    "mixing: x must be images, an array or ImageFiles (n, height, width, "
                    "channels), with y of class indices; not token ids or a dataset that "
                    "serves its own batches."
                )
        if self.balanced and (y is None or not (_is_array(x) or is_token_ids(x, model))):
            raise TransferkitError(
                "balanced: x must be an array, ImageFiles or token ids, with y; not a dataset "
                "that serves its own batches."
            )

    def _stopper(self, monitor, mode):
        """A new `EarlyStopping` for a phase, or `None` with `patience=None`."""
        if self.patience is None:
            return None
        return keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=self.patience)

    def _keep_results(self, history, records, monitor, mode):
        """Sets the attributes `fit` documents."""
        scores = [np.inf if v is None or not np.isfinite(v) else v for v in history[monitor]]
        if mode == "max":
            scores = [-s if np.isfinite(s) else np.inf for s in scores]
        self.history_ = history
        self.phases_ = records
        self.monitor_ = monitor
        self.best_epoch_ = int(np.argmin(scores))
        self.best_ = {k: v[self.best_epoch_] for k, v in history.items()}

    def _cached(self, model, phase, x, y, validation_data, sample_weight, index, count, *,
                given=None, stale=False, scratch):
        """`(head model, changes to fit's arguments)` to train on features, or `None`.

        `given` is fit's `features` while still valid; `scratch` (an
        `ExitStack` closed after the phase) cleans up temporary files.
        """
        if not phase.epochs or parse_plan(phase.unfreeze).kind != "none":
            return None
        label = f"Phase {index + 1}/{count} ({phase.name})"
        reason, augment = self._cache_refusal(model, x, y, validation_data)
        if reason is not None:
            self._say(f"{label}: {reason}: plain path"
                      f"{' (augmented_copies=K would cache K augmented copies)' if augment else ''}"
                      ".")
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
        if given_val is not None and validation_data is not None:
            note += "; validating on the given features"
        return head_model(model), self._augmented(
            augment, phase, x, y, sample_weight, extractor, store, validation, index=index,
            label=label, note=note, scratch=scratch)

    def _cache_refusal(self, model, x, y, validation_data):
        """`(why a frozen phase takes the plain path or None, the augmentation layer)`."""
        reason = ("cache=False" if self.cache is False
                  else "mixup/cutmix/augmix on (features of mixed images are not mixed features)"
                  if self.mixing is not None
                  else cache_refusal(model, allow_augmentation=True))
        if reason is None and not (_is_array(x) and y is not None):
            reason = "inputs are not arrays"
        if reason is None and validation_data is not None and not _is_pair(validation_data):
            reason = "validation data is not an (x, y) pair of arrays"
        augment = None if reason is not None else augmentation_layer(model)
        if augment is not None and not self.augmented_copies:
            reason = "augmentation on"
        return reason, augment

    def _augmented(self, augment, phase, x, y, sample_weight, extractor, store, validation, *,
                   index, label, note, scratch):
        """`fit`'s arguments to train the head on K augmented copies of the features."""
        # One copy per epoch at most: epoch e trains on copy e % K.
        copies = min(int(self.augmented_copies), phase.epochs)
        paths = [None] * copies
        where = "in memory"
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
            seed=None if self.seed is None else [int(self.seed), index], balanced=self.balanced,
        )
        self._say(f"{label}: backbone frozen, augmentation on: training the head on {copies} "
                  f"augmented copies of the features {where}, cycled per epoch (copy e mod "
                  f"{copies}){note}.")
        return {
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
        if not _is_array(x) or validation_data is not None and not _is_pair(validation_data):
            raise TransferkitError(
                "features= needs x and validation_data's x as arrays, the inputs the "
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


    def _say(self, text):
        if self.verbose:
            print(text)

    def _bar(self):
        """1 when extraction shows its progress, else 0 (`verbose=0`, `--quiet`)."""
        return 1 if self.verbose in ("auto", 1, True) and not is_quiet() else 0

    def _fit_verbose(self):
        """`fit`'s verbosity: `"auto"` is a bar on a terminal, else a line an epoch."""
        if is_quiet():
            return 0
        if self.verbose == "auto":
            return 1 if sys.stdout.isatty() else 2
        return self.verbose

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


    def _loss_and_metrics(self, model, monitor):
        loss = self.loss if self.loss is not None else "categorical_crossentropy" \
            if self.mixing is not None else default_loss(model)
        metrics = list(self.metrics) if self.metrics is not None else default_metrics(model)
        extra = metric_for(monitor)  # a monitor that no default metric logs
        if extra is not None and all(getattr(m, "name", m) != extra.name for m in metrics):
            metrics.append(extra)
        return loss, metrics

    def _checkpoint_path(self):
        if self.checkpoint is None:
            return None
        path = os.fspath(self.checkpoint)
        if not path.endswith(".weights.h5"):
            raise TransferkitError(f"checkpoint must end in .weights.h5, got {path!r}.")
        return path


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


def _is_array(x):
    """Whether `x` is an array: NumPy's, or images decoded on demand (`ImageFiles`)."""
    return isinstance(x, (np.ndarray, ImageFiles))


def _is_pair(validation_data):
    """Whether `validation_data` is an `(x, y)` pair of arrays."""
    return (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
            and _is_array(validation_data[0]))


def _streamed(data, seed, model, *, balanced=False, mixing=None, num_classes=None):
    """`fit`'s data arguments with `ImageFiles` and token ids served by `PyDataset`s.

    Training images come shuffled per epoch from `seed` (`AugmentedFeatures`
    with the images as its one copy), validation images in order
    (`Batches`); both decode the next batches while the model computes.
    Token ids for a `model` that takes any length come in batches of similar
    lengths, each cut to its longest text (`LengthBuckets`). With `balanced`
    or `mixing`, arrays are served by an `AugmentedFeatures` too (drawn by
    class, `balanced`), then mixed (`MixedBatches` of `num_classes`).
    """
    x, val = data["x"], data.get("validation_data")
    if data["y"] is not None and is_token_ids(x, model):
        served = LengthBuckets(x, data["y"], sample_weight=data.get("sample_weight"),
                               batch_size=data["batch_size"], seed=seed, balanced=balanced)
        data = {**data, "x": served, "y": None, "sample_weight": None, "batch_size": None,
                "steps_per_epoch": served.steps_per_epoch, "shuffle": False}
    if isinstance(val, (tuple, list)) and len(val) == 2 and is_token_ids(val[0], model):
        size = data.get("validation_batch_size") or data.get("batch_size") or 32
        data = {**data, "validation_data": LengthBuckets(val[0], val[1], batch_size=size,
                                                         shuffle=False),
                "validation_batch_size": None}
    if data["y"] is not None and (isinstance(x, ImageFiles) or isinstance(x, np.ndarray) and (
            balanced or mixing is not None)):
        served = AugmentedFeatures([x], data["y"], sample_weight=data.get("sample_weight"),
                                   batch_size=data["batch_size"], seed=seed, balanced=balanced,
                                   workers=2 if isinstance(x, ImageFiles) else 1)
        data = {**data, "x": served, "y": None, "sample_weight": None, "batch_size": None,
                "steps_per_epoch": served.steps_per_epoch, "shuffle": False,
                "validation_batch_size": data.get("validation_batch_size") or served.batch_size}
    if mixing is not None:
        data = {**data, "x": MixedBatches(data["x"], mixing, num_classes, seed=seed)}
    if isinstance(val, (tuple, list)) and len(val) == 2 and isinstance(val[0], ImageFiles):
        size = data.get("validation_batch_size") or data.get("batch_size") or 32
        data = {**data, "validation_data": Batches(val[0], val[1], batch_size=size),
                "validation_batch_size": None}
    return data


def _evened(data, split, seed):
    """`fit`'s data arguments with every batch split evenly over the devices (`EvenBatches`).

    `split` is `batch_split()`'s `(multiple, part, parts)`. Arrays are first
    served in an order drawn from `seed` (`AugmentedFeatures`), validation
    arrays in order (`Batches`).
    """
    multiple, part, parts = split
    if multiple <= 1:
        return data
    x, val = data["x"], data.get("validation_data")
    if data.get("y") is not None:
        x = AugmentedFeatures([x], data["y"], sample_weight=data.get("sample_weight"),
                              batch_size=data["batch_size"], seed=seed)
    size = data.get("validation_batch_size") or data.get("batch_size") \
        or getattr(x, "batch_size", 32)
    if isinstance(val, (tuple, list)):
        val = Batches(*val[:2], batch_size=size)
    return {**data, "x": EvenBatches(x, multiple, part, parts), "y": None,
            "sample_weight": None,
            "batch_size": None, "shuffle": False,
            "steps_per_epoch": data.get("steps_per_epoch") or getattr(x, "steps_per_epoch", None),
            "validation_data": None if val is None else EvenBatches(val, multiple, part,
                                                                    parts),
            "validation_batch_size": None}


def _one_hot_labels(validation_data, num_classes):
    """`(x_val, y_val)` with class indices `y_val` one-hot; anything else as it is."""
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        return validation_data
    x_val, y_val = validation_data
    y_val = np.asarray(y_val)
    if y_val.ndim == 1 and np.issubdtype(y_val.dtype, np.integer):
        y_val = np.eye(num_classes, dtype="float32")[y_val]
    return x_val, y_val


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


def _extend_history(history, logs, index, rates):
    """Appends a phase's `fit` logs to `history`; returns `(first epoch, epochs run)`."""
    first = len(history.get("loss", []))
    ran = len(logs.get("loss", []))
    for key, values in logs.items():
        if key != "learning_rate":  # ReduceLROnPlateau's; ours is below
            history.setdefault(key, [None] * first).extend(float(v) for v in values)
    history.setdefault("phase", []).extend([index] * ran)
    history.setdefault("learning_rate", []).extend(rates[:ran])
    for values in history.values():  # keys a phase did not log
        values.extend([None] * (first + ran - len(values)))
    return first, ran
