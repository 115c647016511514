"""`train`: an image folder and a backbone in, a complete run folder out."""

import os
import platform
import time

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.models.freezing import BATCHNORM_MODES
from transferkit.training.recipe import FineTuner, Phase, default_recipe
from transferkit.runs import (
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    write_json,
)
from transferkit.outputs import output_folder

HEADS = ("softmax", "logreg", "linear-svm")
FEATURES_DIR = "features"
# Seed 001's rule of thumb: below this, try a linear classifier on the features.
SMALL_DATA = 1000


def train(
    data_dir,
    backbone,
    out,
    *,
    val=None,
    val_split=0.2,
    head="softmax",
    epochs=(5, 10),
    learning_rate=1e-3,
    fine_tune_factor=0.1,
    unfreeze="all",
    optimizer="adam",
    schedule=None,
    lr_decay=None,
    batchnorm="frozen",
    kernel=None,
    bias=None,
    dropout=0.2,
    dropout_after=None,
    dropout_after_rate=0.1,
    dropout_kind="dropout",
    kernel_constraint=None,
    augment=True,
    augmented_copies=0,
    image_size=None,
    crop=None,
    batch_size=32,
    patience=5,
    seed=0,
    weights="imagenet",
    from_scratch=False,
    cache_dir=None,
    report=True,
    strict=False,
    overwrite=False,
    verbose="auto",
):
    """Fine-tunes a catalogue backbone on an image folder; writes a run folder.

    The data: `data_dir` has one subfolder per class. Validation images come
    from `val` (the same class subfolders) or, without it, a stratified
    `val_split` of `data_dir` drawn with `seed`. The model: `build(backbone,
    num_classes)` with augmentation (training only), dropout and penalties.
    The training: the two-phase recipe (`default_recipe`) run by
    `FineTuner`, best weights kept. While the backbone is frozen and the
    images are not augmented, the head trains on the backbone's features
    computed once and kept on disk (`FeatureCache`, in the run folder's
    `features/` or in `cache_dir`): a rerun on the same files reads them.

    With `head="logreg"` or `"linear-svm"` (seed 001's advice for under
    ~1,000 images) no network trains: a scikit-learn linear classifier is fit
    on the frozen backbone's pooled features, its `C` chosen by stratified
    cross-validation on the training images (`transferkit.training.linear`), and
    saved as the model's Dense output layer.

    The run folder (written complete or not at all) holds `model.keras`
    (raw RGB images in, class probabilities out; decision scores for
    `"linear-svm"`), `history.json`, `metrics.json` (final and best
    validation accuracy and loss), `config.json` (the arguments, so
    `train(**config["arguments"])` reruns it, plus class names and versions),
    `curves.png` and `features/` (unless `cache_dir` is given).

    Args:
        data_dir: the training images, one subfolder per class.
        backbone: a catalogue name (`transferkit backbones`).
        out: the run folder to create.
        val: optional folder of validation images (same classes).
        val_split: the share of `data_dir` held out when `val` is `None`.
            Defaults to `0.2`.
        head: `"softmax"` (default; a trained Dense head), `"logreg"` or
            `"linear-svm"` (a linear classifier on frozen features; the
            options below that concern training are then unused).
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `(5, 10)`.
        learning_rate: the head phase's rate. Defaults to `1e-3`.
        fine_tune_factor: fine-tuning rate = `learning_rate * factor`.
            Defaults to `0.1`.
        unfreeze: the fine-tuning phase's freeze plan. Defaults to `"all"`.
        optimizer: optimizer name or spec with parameters, e.g.
            `"sgd:momentum=0.9,nesterov=true"`. Defaults to `"adam"`.
        schedule: learning-rate schedule spec for each phase, e.g.
            `"1cycle:max_lr=1e-2"`, `"cosine:warmup=0.05"`,
            `"plateau:factor=0.5,patience=2"`. Defaults to `None` (constant).
        lr_decay: discriminative fine-tuning in phase 2: each backbone block
            trains at `lr_decay` times the rate of the block after it (the
            head at the full rate). Defaults to `None`.
        batchnorm: `"frozen"` (default; inference mode) or `"train"`.
        kernel: optional kernel penalty spec, e.g. `"l2:1e-4"`.
        bias: optional bias penalty spec.
        dropout: rate before the head. Defaults to `0.2`.
        dropout_after: dropout inserted into the pretrained graph
            (`transferkit.insert_dropout`): `"blocks"` (after each block of
            the backbone), or layer names (`"backbone/block_6_add"`, a list
            or comma-separated). Defaults to `None`.
        dropout_after_rate: the rate of those layers. Defaults to `0.1`.
        dropout_kind: `"dropout"` (default) or `"spatial"` (whole feature
            maps) for those layers.
        kernel_constraint: a constraint on every kernel
            (`transferkit.constrain`), e.g. `"max_norm:3"` (one norm per
            output unit). Defaults to `None`.
        augment: augmentation spec (`True`, `False`, `"flip=horizontal,
            rotate=0.1"`; see `transferkit.data.get_augmentation`).
            Defaults to `True`.
        augmented_copies: with augmentation on, the frozen head phase trains
            through the backbone every epoch (`0`, the default), or on `K`
            augmented copies of the features computed once and cycled per
            epoch (see `FineTuner`).
        image_size: image side in pixels. Defaults to the backbone's.
        crop: `None` (default) resizes each whole image to the square, as
            Keras' `image_dataset_from_directory` does; `"center"` keeps the
            aspect ratio and crops the centre square (what is off-centre is
            lost: on hymenoptera, fixed-feature accuracy drops from 0.948 to
            0.935 with it). `predict` and `evaluate` use the run's choice.
        batch_size: Defaults to 32.
        patience: early-stopping patience per phase, or `None`. Defaults to 5.
        seed: seeds the split, the augmentation and the initialization.
            Defaults to 0.
        weights: `"imagenet"` (default), `None`, or a weights file.
        from_scratch: the baseline that shows what transfer bought: the same
            architecture with random weights, trained in one phase with every
            layer trainable for `sum(epochs)` epochs at `learning_rate`.
            Defaults to `False`.
        cache_dir: a folder for the feature cache, shared between runs.
            Defaults to `None`: the run folder's `features/`.
        report: also write `report.html` and `report.json` (metrics,
            diagnosis, curves, the validation images' confusion matrix and
            worst-classified examples; `transferkit.write_report`). Defaults
            to `True`.
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace `out` if it is a previous `train` run (its
            `config.json` says so) or an empty folder; anything else there is
            refused. Defaults to `False`.
        verbose: Keras' verbosity. Defaults to `"auto"` (progress bars).

    Returns:
        A dict: `model`, `tuner` (the fitted `FineTuner`, or `None`),
        `linear` (the fitted `LinearHead`, or `None`), `metrics`, `config`,
        `out`.

    Example:

    >>> run = train("hymenoptera/train", "efficientnet_lite0", "runs/ants",
    ...             val="hymenoptera/val", epochs=(5, 5))  # doctest: +SKIP
    >>> run["metrics"]["best_val_accuracy"]  # doctest: +SKIP
    """
    from transferkit.training.features import FeatureCache

    arguments = {k: v for k, v in locals().items() if k in ARGUMENTS}
    start = time.perf_counter()
    # Everything that can be wrong is checked before the first image is read;
    # the output folder is locked for the whole run.
    with output_folder(out, "train", inputs=(data_dir, val, cache_dir),
                       overwrite=overwrite) as tmp:
        setup = Setup(**{k: v for k, v in arguments.items() if k in SETUP_ARGUMENTS},
                      verbose=verbose)
        cache_dir = _checked_cache_dir(cache_dir)

        folder, train_set, val_set = scan_split(data_dir, val, val_split, seed, strict)
        setup.say(f"{len(train_set)} training images, {len(val_set)} validation images, "
                  f"classes {train_set.class_names}; images at {setup.size}x{setup.size}.")
        setup.hint(len(train_set))
        x_train, y_train = train_set.load(setup.size, crop=crop, verbose=setup.bar())
        x_val, y_val = val_set.load(setup.size, crop=crop, verbose=setup.bar())

        cache = FeatureCache(cache_dir or os.path.join(tmp, FEATURES_DIR))
        where = cache_dir or os.path.join(os.fspath(out), FEATURES_DIR)

        def features(extractor):
            return (setup.features(cache, extractor, x_train, train_set.files, "training", where),
                    setup.features(cache, extractor, x_val, val_set.files, "validation", where))

        fitted = setup.fit(x_train, y_train, x_val, y_val, len(train_set.class_names),
                           features=features, checkpoint=os.path.join(tmp, "best.weights.h5"))
        model = fitted["model"]
        metrics = {
            **fitted["metrics"],
            "train_images": len(train_set), "val_images": len(val_set),
            "skipped_files": [str(p) for p, _ in folder.skipped + (
                val_set.skipped if val is not None else [])],
            "seconds": round(time.perf_counter() - start, 1),
        }
        run_config = {
            "command": "train",
            "arguments": {k: _jsonable(v) for k, v in arguments.items()},
            "class_names": list(train_set.class_names),
            "image_size": [setup.size, setup.size],
            "crop": crop,
            "backbone": setup.config.name,
            "head": setup.head,
            "outputs": "scores" if setup.head == "linear-svm" else "probabilities",
            "augmentation": None if setup.linear else setup.augmentation_description,
            **fitted["config"],
            "versions": _versions(),
        }
        model.save(os.path.join(tmp, MODEL_FILE))
        write_json(os.path.join(tmp, HISTORY_FILE), fitted["history"])
        write_json(os.path.join(tmp, METRICS_FILE), metrics)
        write_json(os.path.join(tmp, CONFIG_FILE), run_config)
        setup.plot(fitted, os.path.join(tmp, CURVES_FILE),
                   title=f"{setup.config.name} on {os.path.basename(os.path.abspath(data_dir))}")
        if report:
            from transferkit.evaluation.report import write_report

            write_report(tmp, data_dir=val_set, location=out)
    if setup.linear:
        setup.say(f"{setup.head} (C={fitted['linear'].C_:g}): val_accuracy "
                  f"{metrics['best_val_accuracy']:.4f}. Wrote {out} in "
                  f"{metrics['seconds']:.0f} s.")
    else:
        setup.say(f"Best epoch {metrics['best_epoch']}: val_accuracy "
                  f"{metrics['best_val_accuracy']:.4f}, val_loss "
                  f"{metrics['best_val_loss']:.4f}. Wrote {out} in {metrics['seconds']:.0f} s.")
    return {"model": model, "tuner": fitted["tuner"], "linear": fitted["linear"],
            "metrics": metrics, "config": run_config, "out": os.fspath(out)}


def check_options(options, allowed, caller):
    """Fails with one line if `options` has names that are not in `allowed`."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TransferkitError(
            f"Unknown option(s) {', '.join(unknown)} for {caller}; use train's options: "
            f"{', '.join(a for a in allowed if a != 'backbone')}."
        )


def scan_split(data_dir, val, val_split, seed, strict=False):
    """`(folder, training set, validation set)`: `val`'s images, or a split of `data_dir`.

    With a `val` folder its classes must be `data_dir`'s; without one, a
    stratified `val_split` of `data_dir` is drawn with `seed`.
    """
    from transferkit.data.images import scan_image_folder

    folder = scan_image_folder(data_dir, strict=strict)
    if val is not None:
        val_set = scan_image_folder(val, strict=strict)
        if val_set.class_names != folder.class_names:
            raise TransferkitError(
                f"The validation folder's classes {val_set.class_names} differ from the "
                f"training folder's {folder.class_names}; use the same subfolder names."
            )
        return folder, folder, val_set
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) \
            or not 0 < val_split < 1:
        raise TransferkitError(f"val_split must be in (0, 1), like 0.2; got {val_split!r}.")
    return (folder, *folder.split(val_split, seed=seed))


# The options that define how one model is made and trained (train and cv share them).
SETUP_ARGUMENTS = (
    "backbone", "head", "epochs", "learning_rate", "fine_tune_factor", "unfreeze",
    "optimizer", "schedule", "lr_decay", "batchnorm", "kernel", "bias", "dropout",
    "dropout_after", "dropout_after_rate", "dropout_kind", "kernel_constraint", "augment",
    "augmented_copies", "image_size", "crop", "batch_size", "patience", "seed", "weights",
    "from_scratch",
)
ARGUMENTS = ("data_dir", "out", "val", "val_split") + SETUP_ARGUMENTS + (
    "cache_dir", "report", "strict")


class Setup:
    """How one model is built and trained: `train`'s options, checked.

    Shared by `train` and `cross_validate`: construction validates every
    option (before any image is read), `fit` trains one model on given
    arrays.
    """

    def __init__(self, backbone, *, head="softmax", epochs=(5, 10), learning_rate=1e-3,
                 fine_tune_factor=0.1, unfreeze="all", optimizer="adam", schedule=None,
                 lr_decay=None, batchnorm="frozen",
                 kernel=None, bias=None, dropout=0.2, dropout_after=None,
                 dropout_after_rate=0.1, dropout_kind="dropout", kernel_constraint=None,
                 augment=True, augmented_copies=0,
                 image_size=None, crop=None, batch_size=32, patience=5, seed=0,
                 weights="imagenet", from_scratch=False, verbose="auto"):
        from transferkit.backbones.registry import get_backbone_config
        from transferkit.data import augment as augment_module
        from transferkit.regularizers.penalties import get_penalty

        self.config = get_backbone_config(backbone)
        if self.config.modality != "image":
            raise TransferkitError(
                f"{self.config.name} is a {self.config.modality} backbone; train takes image "
                "folders. Pick an image backbone (`transferkit backbones`)."
            )
        if head not in HEADS:
            raise TransferkitError(f"Unknown head {head!r}; use one of {', '.join(HEADS)}.")
        self.head, self.linear = head, head != "softmax"
        if self.linear and from_scratch:
            raise TransferkitError(
                f"head={head!r} classifies pretrained features; it cannot be combined with "
                "from_scratch (random weights give no features worth a linear classifier)."
            )
        self.size = (self.config.default_size if image_size is None
                     else _checked_size(image_size, self.config))
        self.recipe = default_recipe(epochs, learning_rate, fine_tune_factor, unfreeze,
                                     optimizer, schedule=schedule, lr_decay=lr_decay)
        self.weights, self.from_scratch = weights, from_scratch
        if from_scratch:
            self.weights = None
            self.recipe = [Phase(sum(p.epochs for p in self.recipe), learning_rate, "all",
                                 optimizer, name="scratch", schedule=schedule)]
        self.augmentation = augment_module.parse(augment)
        self.augmentation_description = augment_module.describe(augment)
        self.kernel, self.bias = get_penalty(kernel), get_penalty(bias)
        if crop not in (None, "center"):
            raise TransferkitError(f"crop must be None or 'center', got {crop!r}.")
        for name, value, minimum in (("batch_size", batch_size, 1),
                                     ("augmented_copies", augmented_copies, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TransferkitError(f"{name} must be an int >= {minimum}, got {value!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout < 1:
            raise TransferkitError(f"dropout must be in [0, 1), got {dropout!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TransferkitError(f"seed must be an int or None, got {seed!r}.")
        if batchnorm not in BATCHNORM_MODES:
            raise TransferkitError(f"batchnorm must be 'frozen' or 'train', got {batchnorm!r}.")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                     or patience < 1):
            raise TransferkitError(f"patience must be an int >= 1 or None, got {patience!r}.")
        if dropout_after is not None:
            if isinstance(dropout_after_rate, bool) or not isinstance(
                    dropout_after_rate, (int, float)) or not 0 <= dropout_after_rate < 1:
                raise TransferkitError(
                    f"dropout_after_rate must be in [0, 1), got {dropout_after_rate!r}."
                )
            if dropout_kind not in ("dropout", "spatial"):
                raise TransferkitError(
                    f"dropout_kind must be 'dropout' or 'spatial', got {dropout_kind!r}."
                )
            if not isinstance(dropout_after, (str, list, tuple)) or not dropout_after:
                raise TransferkitError(
                    f"dropout_after must be 'blocks', 'head' or layer names, got "
                    f"{dropout_after!r}."
                )
        if kernel_constraint is not None:
            from transferkit.regularizers.constraints import get_constraint

            get_constraint(kernel_constraint)  # fails early on a bad spec
        self.dropout_after, self.dropout_after_rate = dropout_after, dropout_after_rate
        self.dropout_kind, self.kernel_constraint = dropout_kind, kernel_constraint
        self.crop, self.batch_size, self.dropout = crop, batch_size, dropout
        self.augmented_copies, self.patience, self.seed = augmented_copies, patience, seed
        self.batchnorm, self.verbose = batchnorm, verbose

    def fit(self, x_train, y_train, x_val, y_val, num_classes, *, features=None,
            checkpoint=None):
        """Builds and trains one model; returns a dict of what came out.

        `features`, optional, is a callable `extractor -> (train features,
        validation features)`: where frozen features come from (a cache).
        """
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        if self.linear:
            return self._fit_linear(x_train, y_train, x_val, y_val, num_classes, features)
        return self._fit_network(x_train, y_train, x_val, y_val, num_classes, features,
                                 checkpoint)

    def build_model(self, num_classes):
        """The model to train: `build` plus inserted dropout and constraints."""
        from transferkit.models.model import build

        model = build(
            self.config.name, num_classes, weights=self.weights,
            input_shape=(self.size, self.size, 3), dropout=self.dropout, kernel=self.kernel,
            bias=self.bias,
            augmentation=None if self.augmentation is None else self.augmentation.build(
                seed=self.seed),
        )
        if self.dropout_after is not None:
            from transferkit.models.insertion import insert_dropout

            model = insert_dropout(model, self.dropout_after_rate, where=self.dropout_after,
                                   kind=self.dropout_kind, seed=self.seed, blocks=self.config)
        if self.kernel_constraint is not None:
            from transferkit.regularizers.constraints import constrain

            constrain(model, kernel=self.kernel_constraint)
        return model

    def _fit_network(self, x_train, y_train, x_val, y_val, num_classes, features, checkpoint):
        from transferkit.training.features import cache_refusal, feature_extractor

        model = self.build_model(num_classes)
        given = None
        first = self.recipe[0]
        if features is not None and first.epochs and first.unfreeze == "none" \
                and cache_refusal(model) is None:
            given = features(feature_extractor(model))
        tuner = FineTuner(
            self.recipe, batch_size=self.batch_size, patience=self.patience,
            batchnorm=self.batchnorm, checkpoint=checkpoint, seed=self.seed,
            augmented_copies=self.augmented_copies, verbose=self.verbose,
        )
        tuner.fit(model, x_train, y_train, validation_data=(x_val, y_val), features=given)
        if checkpoint is not None and os.path.exists(checkpoint):
            os.remove(checkpoint)  # the model holds the same weights
        probabilities = model.predict(x_val, batch_size=self.batch_size, verbose=0)
        history = tuner.history_
        best = tuner.best_epoch_
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
                "config": {"phases": tuner.phases_}}

    def _fit_linear(self, x_train, y_train, x_val, y_val, num_classes, features):
        from transferkit.training.features import extract_features, feature_extractor
        from transferkit.training.linear import LinearHead
        from transferkit.models.model import build

        extractor = feature_extractor(build(
            self.config.name, num_classes, weights=self.weights,
            input_shape=(self.size, self.size, 3), dropout=0.0,
        ))
        if features is None:
            f_train, f_val = (extract_features(extractor, x, batch_size=self.batch_size,
                                               verbose=self.bar()) for x in (x_train, x_val))
        else:
            f_train, f_val = features(extractor)
        start = time.perf_counter()
        linear = LinearHead(self.head, seed=0 if self.seed is None else self.seed)
        linear.fit(f_train, y_train)
        seconds = time.perf_counter() - start
        self.say(f"{self.head}: C={linear.C_:g} chosen by {linear.folds_}-fold "
                 f"cross-validation on the training features (accuracy "
                 f"{linear.cv_accuracy_:.4f}), {seconds:.1f} s.")
        layer = linear.to_layer()
        outputs = keras.ops.convert_to_numpy(layer(np.asarray(f_val)))
        accuracy = float(np.mean(outputs.argmax(axis=1) == y_val))
        loss = None
        if self.head == "logreg":
            from sklearn.metrics import log_loss

            loss = float(log_loss(y_val, outputs, labels=list(range(num_classes))))
        model = keras.Model(extractor.inputs[0], layer(extractor.outputs[0]),
                            name=f"{self.config.name}_{self.head.replace('-', '_')}")
        metrics = {
            "best_epoch": None, "best_val_accuracy": accuracy, "best_val_loss": loss,
            "final_val_accuracy": accuracy, "epochs_run": 0, "C": linear.C_,
            "cv_accuracy": linear.cv_accuracy_, "cv_folds": linear.folds_,
        }
        return {"model": model, "tuner": None, "linear": linear, "metrics": metrics,
                "history": {"grid": linear.cv_results_},
                "config": {"C": linear.C_, "Cs": [r["C"] for r in linear.cv_results_],
                           "cv_folds": linear.folds_}}

    def features(self, cache, extractor, x, files, label, where=None):
        """The frozen features of `x` (read from files `files`) through `cache`.

        `where` names the cache folder in the log (default: its path).
        """
        found = cache.features(extractor, x, files=files, preprocessing=self.preprocessing,
                               batch_size=self.batch_size, verbose=self.bar())
        self.say(f"{label[0].upper() + label[1:]} features: "
                 f"{'read from' if cache.last_hit_ else 'extracted into'} "
                 f"{where or cache.directory}.")
        return found

    @property
    def preprocessing(self):
        """What turns a file into the model's input: part of the cache key."""
        return f"size={self.size},crop={self.crop}"

    def hint(self, train_images):
        if not self.linear and train_images < SMALL_DATA:
            self.say(
                f"Hint: {train_images} training images is under ~{SMALL_DATA:,}; a linear "
                "classifier on the frozen features (--head logreg or --head linear-svm) is "
                "often as accurate, in seconds (seed 001)."
            )

    def plot(self, fitted, path, title):
        from transferkit.evaluation.plots import plot_grid, plot_history

        if self.linear:
            plot_grid(fitted["linear"].cv_results_, path, title=f"{title}: {self.head}")
        else:
            plot_history(fitted["history"]["history"], path,
                         phases=fitted["history"]["phases"], title=title)

    def say(self, text):
        if self.verbose:
            print(text)

    def bar(self):
        return 1 if self.verbose in ("auto", 1, True) else 0


def _checked_cache_dir(cache_dir):
    if cache_dir is None:
        return None
    path = os.path.expanduser(os.fspath(cache_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise TransferkitError(f"cache_dir {path} is a file; give a folder.")
    return path


def _checked_size(image_size, config):
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TransferkitError(f"image_size must be an int, got {image_size!r}.")
    if image_size < config.min_size:
        raise TransferkitError(
            f"{config.name} needs images of at least {config.min_size} pixels; got "
            f"image_size={image_size}."
        )
    return image_size


def _jsonable(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "get_config"):  # a Keras regularizer object
        return repr(value)
    return value


def _versions():
    import transferkit

    return {"transferkit": transferkit.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version(),
            "numpy": np.__version__}
