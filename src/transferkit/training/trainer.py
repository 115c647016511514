"""`Trainer`: one model built and trained from a `TrainingConfig`.

The machinery under `train`, `cross_validate`, `compare` and `lr_find`: it
builds the model a configuration describes, trains it on given arrays (the
recipe through `FineTuner`, or a linear classifier on frozen features) and
reports what came out. Data loading and run folders are the workflows' part.
"""

import dataclasses
import os
import time

import keras
import numpy as np

from transferkit.backbones.shapes import MAX_SEQUENCE_LENGTH
from transferkit.optim.optimizers import get_optimizer
from transferkit.progress import is_quiet
from transferkit.training.class_weights import (
    class_weights,
    imbalance_metrics,
    sample_weights,
)
from transferkit.training.config import SKEWED, SMALL_DATA
from transferkit.training.distribution import placement
from transferkit.training.recipe import FineTuner


# The output layer a task's network ends in (`build`'s `output`).
OUTPUTS = {"classes": "softmax", "multilabel": "sigmoid", "regression": "linear"}


class Trainer:
    """Builds and trains one model as a `TrainingConfig` says.

    Args:
        config: a `TrainingConfig` (checked when it was made).
        verbose: Keras' verbosity; `0` also silences the log lines.
            Defaults to `"auto"`.

    Example:

    >>> trainer = Trainer(TrainingConfig("mobilenet_v3_small", weights=None))  # doctest: +SKIP
    >>> fitted = trainer.fit(x_train, y_train, x_val, y_val, num_classes=2)  # doctest: +SKIP
    """

    def __init__(self, config, verbose="auto"):
        from transferkit.data import augment
        from transferkit.regularizers.penalties import get_penalty

        self.config = config
        self.backbone = config.backbone_config
        self.text = self.backbone.modality == "text"
        if self.text:  # tokens per text: None until `for_texts` chose it
            self.size = config.max_length
            self.augmentation, self.augmentation_description = None, "none (text)"
        else:
            self.size = config.image_size or self.backbone.input_size(linear=config.linear)
            self.augmentation = augment.parse(config.augment)
            self.augmentation_description = augment.describe(config.augment)
        self.placement = placement(config.devices, config.model_parallel)
        self.placement.check_batch(config.batch_size)
        self.recipe = config.phases()
        if config.scale_lr and self.placement.replicas > 1:  # the linear scaling rule
            self.recipe = [dataclasses.replace(p, learning_rate=p.learning_rate
                                               * self.placement.replicas) for p in self.recipe]
        for phase in self.recipe:  # what only Keras checks (SGD's momentum, ...), now
            get_optimizer(phase.optimizer, phase.learning_rate)
        self.weights = None if config.from_scratch else config.weights
        self.kernel, self.bias = get_penalty(config.kernel), get_penalty(config.bias)
        self.verbose = verbose

    def fit(self, x_train, y_train, x_val, y_val, num_classes, *, features=None,
            checkpoint=None, partial=None, class_names=None, callbacks=None, task="classes"):
        """Builds and trains one model; returns a dict of what came out.

        `features`, optional, is a callable `extractor -> (train features,
        validation features)`: where frozen features come from (a cache).
        `partial`, optional, a loaded `transferkit.training.resume.PartialRun`:
        a checkpoint after every epoch, and a resume from its last one
        (`FineTuner`'s `partial`; a linear head ignores it).
        `callbacks`, optional: extra Keras callbacks for every phase
        (`FineTuner`'s; the live logs of `transferkit.training.tracking`); a
        linear head ignores them.

        The dict: `model`, `tuner`, `linear`, `metrics`, `history`, `config`
        and `val_scores`, the final model's class scores on `x_val`
        (probabilities, or a linear SVM's decision scores): computed once
        for the metrics, and kept for the caller's report. `class_names`
        (default `"0"`, `"1"`, ...) is what a class-weight file names.

        `task` (`TASKS`) is what `y` holds: `"classes"` (default; class
        indices), `"multilabel"` (`(n, num_classes)` 0/1: a sigmoid per
        label, per-label thresholds tuned on the validation set and kept in
        `config["thresholds"]`) or `"regression"` (numbers, `num_classes` 1:
        the network trains on standardized targets, then its head is rescaled
        so that the model outputs the target's units).
        """
        self.config.for_task(task)
        if self.config.seed is not None:
            keras.utils.set_random_seed(self.config.seed)
        weights = None if task != "classes" else class_weights(
            self.config.class_weight, y_train,
            class_names or [str(c) for c in range(num_classes)])
        with self.placement.scope():
            self.say_placement()
            if self.config.linear:
                fitted = self._fit_linear(x_train, y_train, x_val, y_val, num_classes, features,
                                          weights, task)
            else:
                fitted = self._fit_network(x_train, y_train, x_val, y_val, num_classes, features,
                                           checkpoint, partial, weights, callbacks, task)
        if task != "classes":
            return _with_target_metrics(fitted, y_val, task, class_names)
        return self._with_imbalance_metrics(fitted, y_val, weights)

    def say_placement(self):
        """Says where the models train, when on several devices (`Placement.describe`)."""
        if self.placement.distributed:
            scaled = (f" Learning rates x{self.placement.replicas} (--scale-lr)."
                      if self.config.scale_lr else "")
            self.say(self.placement.describe(self.config.batch_size) + scaled)

    @staticmethod
    def _with_imbalance_metrics(fitted, y_val, weights):
        """Adds the skewed-class figures of the final model on the validation set."""
        figures = imbalance_metrics(y_val, fitted["val_scores"]) if len(y_val) else {}
        fitted["metrics"].update({f"val_{k}": v for k, v in figures.items()})
        if weights is not None:
            fitted["metrics"]["class_weights"] = [float(w) for w in weights]
        return fitted

    def for_data(self, train_images, task="classes"):
        """This trainer, or one for `config.for_data(train_images, task)` when `head="auto"`.

        Says which head `"auto"` became and why.
        """
        config = self.config.for_data(train_images, task)
        if config is self.config:
            return self
        decided = Trainer(config, verbose=self.verbose)
        if config.linear:
            why = ("in seconds instead of minutes; fine-tuning is often more accurate on "
                   "long texts" if self.text else
                   "as accurate as fine-tuning in a fraction of the time")
            decided.say(f"Head auto -> {config.head}: a linear "
                        f"{'model' if task == 'regression' else 'classifier'} on the frozen "
                        f"features, for {train_images} training {self.noun} (under "
                        f"{SMALL_DATA:,}, {why}; bench/README.md). --head softmax "
                        "fine-tunes instead.")
        else:
            why = (f"at least {SMALL_DATA:,} training {self.noun}" if train_images >= SMALL_DATA
                   else "no pretrained weights" if config.weights is None
                   else "fine-tuning options given")
            decided.say(f"Head auto -> softmax: fine-tuning ({why}).")
        return decided

    def for_texts(self, texts):
        """This trainer, or one whose `max_length` is chosen from `texts` when unset.

        The smallest multiple of 8 covering 99 % of the texts' token counts,
        at most the model's 512 (`transferkit.backbones.text.
        choose_sequence_length`); said, with the longest text.
        """
        if not self.text or self.config.max_length is not None:
            return self
        from transferkit.backbones.text import choose_sequence_length, token_lengths

        # Counted up to twice the model's limit, to say how many texts are cut.
        lengths = token_lengths(texts, self.backbone.name, limit=2 * MAX_SEQUENCE_LENGTH)
        length = choose_sequence_length(lengths)
        cut = int(np.count_nonzero(lengths > length))
        decided = Trainer(dataclasses.replace(self.config, max_length=length),
                          verbose=self.verbose)

        def count(n):
            return f"{n:,}" if n < 2 * MAX_SEQUENCE_LENGTH else f"over {n - 1:,}"

        decided.say(f"Texts of {length} tokens (--max-length): 99% of the training texts "
                    f"have at most {count(int(np.quantile(lengths, 0.99, method='higher')))}, "
                    f"the longest {count(int(lengths.max()))}; {cut:,} of {len(lengths):,} "
                    "are cut.")
        return decided

    def encode(self, texts):
        """Texts as the model's input: token ids, `(len(texts), max_length)` int32."""
        from transferkit.backbones.text import tokenize

        return tokenize(list(texts), self.backbone.name, self.size)

    @property
    def input_shape(self):
        """The model's input shape: `(size, size, 3)` images, or token ids of any length.

        Texts are tokenized to `max_length`; batches of similar lengths are
        cut to their longest text (`transferkit.data.buckets`).
        """
        return (None,) if self.text else (self.size, self.size, 3)

    def disk_space(self):
        """About the most bytes a run writes at once, from the parameter count.

        The saved model; for a network, also the best epoch's weights and,
        while an epoch checkpoint replaces the previous one, two checkpoints
        of weights, best weights and optimizer moments
        (`transferkit.training.resume`). Features are not counted (small).
        """
        weights = 4 * self.backbone.parameters
        return weights if self.config.linear else weights * (2 + 2 * 4)

    def build_model(self, num_classes, task="classes"):
        """The model to train: `build` plus inserted dropout and constraints.

        Its head: a softmax over `num_classes` classes, a sigmoid per label
        (`task="multilabel"`), or one linear unit (`"regression"`).
        """
        from transferkit.models.model import build
        from transferkit.models.precision import dtype_policy, policy_name

        # Augmentation computes in float32 (made outside the policy); the
        # rebuilt graph of insert_dropout keeps the model's policy.
        # MixUp and CutMix are not in the model: FineTuner mixes the batches.
        layers = None if self.augmentation is None else self.augmentation.in_model()
        augmentation = None if layers is None or layers.is_off() else layers.build(
            seed=self.config.seed)
        with dtype_policy(policy_name(self.config.precision)):
            model = build(
                self.source(), num_classes, output=OUTPUTS[task], weights=self.weights,
                input_shape=self.input_shape, dropout=self.config.dropout, kernel=self.kernel,
                bias=self.bias, augmentation=augmentation,
                precision=None if self.reused else self.config.precision, name=self.model_name,
            )
            if self.config.dropout_after is not None:
                from transferkit.models.insertion import insert_dropout

                config = self.config
                model = insert_dropout(model, config.dropout_after_rate,
                                       where=config.dropout_after, kind=config.dropout_kind,
                                       seed=config.seed, blocks=self.backbone)
        if self.config.kernel_constraint is not None:
            from transferkit.regularizers.constraints import constrain

            constrain(model, kernel=self.config.kernel_constraint)
        if self.config.lora is not None:
            from transferkit.models.lora import enable_lora

            adapted = enable_lora(model, self.config.lora)
            self.say(f"LoRA rank {self.config.lora} on {len(adapted)} layers "
                     f"({adapted[0]}, ...): when the backbone trains, only its adapters do.")
        return model

    def _fit_network(self, x_train, y_train, x_val, y_val, num_classes, features, checkpoint,
                     partial=None, weights=None, callbacks=None, task="classes"):
        from transferkit.training.features import (
            cache_refusal,
            extract_features,
            feature_extractor,
        )

        model = self.build_model(num_classes, task)
        split = getattr(self.placement.strategy, "split", None)
        if split is not None:
            names = [v.path for v in model.weights if v.path in split]
            self.say(f"Split over {self.placement.model_parallel} devices: "
                     + (", ".join(names) if names else
                        "no kernel (none is 2-D, divisible and large enough)") + ".")
        mixing = None if self.augmentation is None else self.augmentation.mixing()
        loss, scale = None, None
        if task == "regression":  # trained on standardized targets
            scale = target_scale(y_train)
            y_train, y_val = ((np.asarray(y, "float32") - scale[0]) / scale[1]
                              for y in (y_train, y_val))
            loss = regression_loss(self.config.loss)
        given = None
        first = self.recipe[0]
        if features is not None and first.epochs and first.unfreeze == "none" \
                and cache_refusal(model) is None and mixing is None:
            given = features(feature_extractor(model))
        tuner = FineTuner(
            self.recipe, batch_size=self.config.batch_size, patience=self.config.patience,
            batchnorm=self.config.batchnorm, checkpoint=checkpoint, seed=self.config.seed,
            augmented_copies=self.config.augmented_copies, mixing=mixing,
            balanced=self.config.balanced_batches, verbose=self.verbose,
            partial=partial, monitor=self.config.monitor, callbacks=callbacks, loss=loss,
            metrics=["mae"] if task == "regression" else None,
        )
        with self.placement.synchronized_batchnorm(model):
            tuner.fit(model, x_train, y_train, validation_data=(x_val, y_val), features=given,
                      sample_weight=sample_weights(weights, y_train))
        if checkpoint is not None and os.path.exists(checkpoint):
            os.remove(checkpoint)  # the model holds the same weights
        if scale is not None:  # the model outputs the target's units
            rescale_head(model.get_layer("head"), *scale)
        # The whole model over the validation images, batch by batch.
        probabilities = extract_features(model, x_val, batch_size=self.config.batch_size)
        history = tuner.history_
        best = tuner.best_epoch_
        if task != "classes":
            metrics = {"best_epoch": best + 1, "best_val_loss": history["val_loss"][best],
                       "epochs_run": len(history["loss"])}
            if scale is not None:
                metrics.update({"loss_units": "standardized targets",
                                "target_mean": scale[0], "target_std": scale[1]})
            return {"model": model, "tuner": tuner, "linear": None, "metrics": metrics,
                    "history": {"history": history, "phases": tuner.phases_},
                    "config": {"phases": tuner.phases_}, "val_scores": probabilities}
        metrics = {
            "best_epoch": best + 1,
            "best_val_accuracy": history["val_accuracy"][best],
            "best_val_loss": history["val_loss"][best],
            "final_val_accuracy": float(np.mean(probabilities.argmax(axis=1) == y_val)),
            "last_epoch_val_accuracy": history["val_accuracy"][-1],
            "epochs_run": len(history["loss"]),
        }
        return {"model": model, "tuner": tuner, "linear": None, "metrics": metrics,
                "history": {"history": history, "phases": tuner.phases_},
                "config": {"phases": tuner.phases_}, "val_scores": probabilities}

    def _fit_linear(self, x_train, y_train, x_val, y_val, num_classes, features, weights=None,
                    task="classes"):
        from transferkit.models.model import build
        from transferkit.training.features import extract_features, feature_extractor
        from transferkit.training.linear import LinearHead

        extractor = feature_extractor(build(
            self.source(), num_classes, output=OUTPUTS[task], weights=self.weights,
            input_shape=self.input_shape, dropout=0.0, name=self.model_name,
            precision=None if self.reused else self.config.precision,
        ))
        if features is None:
            f_train, f_val = (extract_features(extractor, x, batch_size=self.config.batch_size,
                                               verbose=self.bar()) for x in (x_train, x_val))
        else:
            f_train, f_val = features(extractor)
        start = time.perf_counter()
        seed = 0 if self.config.seed is None else self.config.seed
        linear = LinearHead(self.config.head, seed=seed, class_weight=None if weights is None
                            else {c: float(w) for c, w in enumerate(weights)})
        if task == "multilabel":
            y_train = np.asarray(y_train, dtype=np.int64)
        linear.fit(f_train, y_train)
        seconds = time.perf_counter() - start
        model_name = (f"{self.backbone.catalogue or 'reused'}" if self.reused
                      else self.backbone.name) + f"_{self.config.head.replace('-', '_')}"
        if task != "classes":
            return self._linear_for_targets(linear, extractor, f_val, seconds, model_name)
        self.say(f"{self.config.head}: C={linear.C_:g} chosen by {linear.folds_}-fold "
                 f"cross-validation on the training features (accuracy "
                 f"{linear.cv_accuracy_:.4f}), {seconds:.1f} s.")
        layer = linear.to_layer()
        outputs = keras.ops.convert_to_numpy(layer(np.asarray(f_val)))
        accuracy = float(np.mean(outputs.argmax(axis=1) == y_val))
        loss = None
        if self.config.head == "logreg":
            from sklearn.metrics import log_loss

            loss = float(log_loss(y_val, outputs, labels=list(range(num_classes))))
        model = keras.Model(extractor.inputs[0], layer(extractor.outputs[0]), name=model_name)
        metrics = {
            "best_epoch": None, "best_val_accuracy": accuracy, "best_val_loss": loss,
            "final_val_accuracy": accuracy, "epochs_run": 0, "C": linear.C_,
            "cv_accuracy": linear.cv_accuracy_, "cv_folds": linear.folds_,
        }
        return {"model": model, "tuner": None, "linear": linear, "metrics": metrics,
                "history": {"grid": linear.cv_results_},
                "config": {"C": linear.C_, "Cs": [r["C"] for r in linear.cv_results_],
                           "cv_folds": linear.folds_},
                "val_scores": outputs}

    def _linear_for_targets(self, linear, extractor, f_val, seconds, name):
        """A fitted per-label logistic regression or ridge, as the run's model."""
        if linear.task_ == "regression":
            self.say(f"ridge: alpha={linear.alpha_:g} chosen by {linear.folds_}-fold "
                     f"cross-validation on the training features (RMSE {linear.cv_rmse_:.4g}),"
                     f" {seconds:.1f} s.")
            chosen = {"alpha": linear.alpha_, "cv_rmse": linear.cv_rmse_}
        else:
            self.say(f"logreg per label: C={linear.C_:g} chosen by {linear.folds_}-fold "
                     f"cross-validation on the training features, {seconds:.1f} s.")
            chosen = {"C": linear.C_}
        layer = linear.to_layer()
        outputs = keras.ops.convert_to_numpy(layer(np.asarray(f_val)))
        model = keras.Model(extractor.inputs[0], layer(extractor.outputs[0]), name=name)
        metrics = {"best_epoch": None, "epochs_run": 0, "cv_folds": linear.folds_, **chosen}
        return {"model": model, "tuner": None, "linear": linear, "metrics": metrics,
                "history": {"grid": linear.cv_results_},
                "config": {**chosen, "cv_folds": linear.folds_}, "val_scores": outputs}

    @property
    def reused(self):
        """Whether the backbone is the user's own model (`--backbone PATH`), not the catalogue's."""
        return hasattr(self.backbone, "load")

    def source(self):
        """What `build` starts from: the catalogue name, or the user's model read afresh.

        Model A's file is read again for every model, so no model shares a
        weight with it; `from_scratch` (or `weights=None`) keeps A's layers
        and draws new weights.
        """
        if not self.reused:
            return self.backbone.name
        return self.backbone.load(weights=None if self.weights is None else "source")

    @property
    def model_name(self):
        """The model's name: `"<catalogue>_classifier"` (freeze plans read blocks from it)."""
        if not self.reused:
            return None  # build's own
        catalogue = self.backbone.catalogue
        return f"{catalogue}_classifier" if catalogue else "classifier"

    def features(self, cache, extractor, x, files, label, where=None):
        """The frozen features of `x` (read from files `files`) through `cache`.

        `where` names the cache folder in the log (default: its path).
        """
        found = cache.features(extractor, x, files=files, preprocessing=self.preprocessing,
                               batch_size=self.config.batch_size, verbose=self.bar())
        self.say(f"{label[0].upper() + label[1:]} features: "
                 f"{'read from' if cache.last_hit_ else 'extracted into'} "
                 f"{where or cache.directory}.")
        return found

    @property
    def preprocessing(self):
        """What turns a file into the model's input: part of the cache key."""
        if self.text:
            return f"tokens={self.size}"
        return f"size={self.size},crop={self.config.crop}"

    def hint(self, train_images):
        if not self.config.linear and train_images < SMALL_DATA:
            self.say(
                f"Hint: {train_images} training {self.noun} is under ~{SMALL_DATA:,}; a linear "
                "classifier on the frozen features (--head logreg or --head linear-svm) is "
                "often as accurate, in seconds (seed 001)."
            )

    def skew_hint(self, labels, class_names):
        """Says so when the largest class has `SKEWED` times the smallest's examples, unweighted."""
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
        if self.config.class_weight is not None or self.config.balanced_batches \
                or counts.min() == 0 or counts.max() < SKEWED * counts.min():
            return
        big, small = int(counts.argmax()), int(counts.argmin())
        self.say(
            f"Hint: the classes are skewed ({class_names[big]} {counts[big]}, "
            f"{class_names[small]} {counts[small]}); accuracy hides the rare class's errors. "
            "--class-weight balanced weighs each class alike (on hymenoptera at 10:1 it raised "
            "balanced accuracy from 0.84 to 0.89); metrics.json gives balanced accuracy and "
            "macro-F1.")

    @property
    def noun(self):
        """What an example is: `"texts"` or `"images"`."""
        return "texts" if self.text else "images"

    def say(self, text):
        if self.verbose:
            print(text)

    def bar(self):
        """1 when passes over data show their progress, else 0 (`--quiet`, `verbose=0`)."""
        return 1 if self.verbose in ("auto", 1, True) and not is_quiet() else 0


def target_scale(y):
    """`(mean, standard deviation)` of numeric targets, as floats; a constant target's std is 1."""
    y = np.asarray(y, dtype="float64")
    std = float(y.std())
    return float(y.mean()), std if std > 0 else 1.0


def regression_loss(name):
    """The Keras loss of `TrainingConfig.loss` for standardized targets."""
    return {"auto": "mean_squared_error", "mse": "mean_squared_error",
            "mae": "mean_absolute_error"}.get(name) or keras.losses.Huber(delta=1.0)


def rescale_head(head, mean, std):
    """Folds `y = std * z + mean` into a Dense head trained on standardized targets."""
    kernel, bias = head.get_weights()
    head.set_weights([kernel * std, bias * std + mean])


def _with_target_metrics(fitted, y_val, task, label_names):
    """The validation figures of multi-label or numeric targets, added to `fitted`."""
    from transferkit.training.targets import (
        multilabel_metrics,
        regression_metrics,
        tune_thresholds,
    )

    scores = np.asarray(fitted["val_scores"])
    if task == "regression":
        figures = regression_metrics(np.asarray(y_val), scores.reshape(-1))
        fitted["metrics"].update({f"val_{k}": v for k, v in figures.items()})
        return fitted
    thresholds = tune_thresholds(y_val, scores)
    at_half = multilabel_metrics(y_val, scores, label_names=label_names)
    figures = multilabel_metrics(y_val, scores, thresholds, label_names=label_names)
    fitted["metrics"].update({f"val_{k}": v for k, v in figures.items()})
    fitted["metrics"].update({"val_micro_f1_at_0.5": at_half["micro_f1"],
                              "val_macro_f1_at_0.5": at_half["macro_f1"],
                              "thresholds": [float(t) for t in thresholds]})
    fitted["config"]["thresholds"] = [float(t) for t in thresholds]
    return fitted
