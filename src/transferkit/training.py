"""`train`: an image folder and a backbone in, a complete run folder out."""

import os
import platform
import time

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.recipe import FineTuner, default_recipe
from transferkit.runs import (
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    check_run_dir,
    run_dir,
    write_json,
)


def train(
    data_dir,
    backbone,
    out,
    *,
    val=None,
    val_split=0.2,
    epochs=(5, 10),
    learning_rate=1e-3,
    fine_tune_factor=0.1,
    unfreeze="all",
    optimizer="adam",
    batchnorm="frozen",
    kernel=None,
    bias=None,
    dropout=0.2,
    augment=True,
    image_size=None,
    crop=None,
    batch_size=32,
    patience=5,
    seed=0,
    weights="imagenet",
    from_scratch=False,
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
    `FineTuner`, best weights kept.

    The run folder (written complete or not at all) holds `model.keras`
    (raw RGB images in, class probabilities out), `history.json`,
    `metrics.json` (final and best validation accuracy and loss),
    `config.json` (the arguments, so `train(**config["arguments"])` reruns
    it, plus class names and versions) and `curves.png`.

    Args:
        data_dir: the training images, one subfolder per class.
        backbone: a catalogue name (`transferkit backbones`).
        out: the run folder to create.
        val: optional folder of validation images (same classes).
        val_split: the share of `data_dir` held out when `val` is `None`.
            Defaults to `0.2`.
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `(5, 10)`.
        learning_rate: the head phase's rate. Defaults to `1e-3`.
        fine_tune_factor: fine-tuning rate = `learning_rate * factor`.
            Defaults to `0.1`.
        unfreeze: the fine-tuning phase's freeze plan. Defaults to `"all"`.
        optimizer: optimizer name. Defaults to `"adam"`.
        batchnorm: `"frozen"` (default; inference mode) or `"train"`.
        kernel: optional kernel penalty spec, e.g. `"l2:1e-4"`.
        bias: optional bias penalty spec.
        dropout: rate before the head. Defaults to `0.2`.
        augment: augmentation spec (`True`, `False`, `"flip=horizontal,
            rotate=0.1"`; see `transferkit.data.get_augmentation`).
            Defaults to `True`.
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
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace a non-empty `out`. Defaults to `False`.
        verbose: Keras' verbosity. Defaults to `"auto"` (progress bars).

    Returns:
        A dict: `model`, `tuner` (the fitted `FineTuner`), `metrics`,
        `config`, `out`.

    Example:

    >>> run = train("hymenoptera/train", "efficientnet_lite0", "runs/ants",
    ...             val="hymenoptera/val", epochs=(5, 5))  # doctest: +SKIP
    >>> run["metrics"]["best_val_accuracy"]  # doctest: +SKIP
    """
    from transferkit.backbones.registry import get_backbone_config
    from transferkit.data import augment as augment_module
    from transferkit.data.images import scan_image_folder
    from transferkit.model import build
    from transferkit.penalties import get_penalty

    arguments = {k: v for k, v in locals().items() if k in _ARGUMENTS}
    start = time.perf_counter()
    # Everything that can be wrong is checked before the first image is read.
    check_run_dir(out, overwrite)
    config = get_backbone_config(backbone)
    if config.modality != "image":
        raise TransferkitError(
            f"{config.name} is a {config.modality} backbone; train takes image folders. "
            "Pick an image backbone (`transferkit backbones`)."
        )
    size = config.default_size if image_size is None else _checked_size(image_size, config)
    recipe = default_recipe(epochs, learning_rate, fine_tune_factor, unfreeze, optimizer)
    if from_scratch:
        from transferkit.recipe import Phase

        weights = None
        recipe = [Phase(sum(p.epochs for p in recipe), learning_rate, "all", optimizer,
                        name="scratch")]
    augmentation = augment_module.parse(augment)
    get_penalty(kernel), get_penalty(bias)
    if crop not in (None, "center"):
        raise TransferkitError(f"crop must be None or 'center', got {crop!r}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")

    folder = scan_image_folder(data_dir, strict=strict)
    if val is not None:
        train_set, val_set = folder, scan_image_folder(val, strict=strict)
        if val_set.class_names != folder.class_names:
            raise TransferkitError(
                f"The validation folder's classes {val_set.class_names} differ from the "
                f"training folder's {folder.class_names}; use the same subfolder names."
            )
    else:
        train_set, val_set = folder.split(val_split, seed=seed)
    _say(verbose, f"{len(train_set)} training images, {len(val_set)} validation images, "
         f"classes {train_set.class_names}; images at {size}x{size}.")
    x_train, y_train = train_set.load(size, crop=crop, verbose=_bar(verbose))
    x_val, y_val = val_set.load(size, crop=crop, verbose=_bar(verbose))

    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = build(
        backbone, len(train_set.class_names), weights=weights,
        input_shape=(size, size, 3), dropout=dropout, kernel=kernel, bias=bias,
        augmentation=None if augmentation is None else augmentation.build(seed=seed),
    )
    with run_dir(out, overwrite) as tmp:
        tuner = FineTuner(
            recipe, batch_size=batch_size, patience=patience, batchnorm=batchnorm,
            checkpoint=os.path.join(tmp, "best.weights.h5"), seed=seed, verbose=verbose,
        )
        tuner.fit(model, x_train, y_train, validation_data=(x_val, y_val))
        os.remove(os.path.join(tmp, "best.weights.h5"))  # model.keras holds the same weights
        probabilities = model.predict(x_val, batch_size=batch_size, verbose=0)
        final_accuracy = float(np.mean(probabilities.argmax(axis=1) == y_val))

        history = tuner.history_
        metrics = {
            "best_epoch": tuner.best_epoch_ + 1,
            "best_val_accuracy": history["val_accuracy"][tuner.best_epoch_],
            "best_val_loss": history["val_loss"][tuner.best_epoch_],
            "final_val_accuracy": final_accuracy,
            "last_epoch_val_accuracy": history["val_accuracy"][-1],
            "epochs_run": len(history["loss"]),
            "train_images": len(train_set), "val_images": len(val_set),
            "skipped_files": [str(p) for p, _ in folder.skipped + (
                val_set.skipped if val is not None else [])],
            "seconds": round(time.perf_counter() - start, 1),
        }
        run_config = {
            "command": "train",
            "arguments": {k: _jsonable(v) for k, v in arguments.items()},
            "class_names": list(train_set.class_names),
            "image_size": [size, size],
            "crop": crop,
            "backbone": config.name,
            "augmentation": augment_module.describe(augment),
            "phases": tuner.phases_,
            "versions": _versions(),
        }
        from transferkit.plots import plot_history
        from transferkit.saving import save_model

        save_model(model, os.path.join(tmp, MODEL_FILE))
        write_json(os.path.join(tmp, HISTORY_FILE), {"history": history, "phases": tuner.phases_})
        write_json(os.path.join(tmp, METRICS_FILE), metrics)
        write_json(os.path.join(tmp, CONFIG_FILE), run_config)
        plot_history(history, os.path.join(tmp, CURVES_FILE), phases=tuner.phases_,
                     title=f"{config.name} on {os.path.basename(os.path.abspath(data_dir))}")
    _say(verbose, f"Best epoch {metrics['best_epoch']}: val_accuracy "
         f"{metrics['best_val_accuracy']:.4f}, val_loss {metrics['best_val_loss']:.4f}. "
         f"Wrote {out} in {metrics['seconds']:.0f} s.")
    return {"model": model, "tuner": tuner, "metrics": metrics, "config": run_config,
            "out": os.fspath(out)}


_ARGUMENTS = (
    "data_dir", "backbone", "out", "val", "val_split", "epochs", "learning_rate",
    "fine_tune_factor", "unfreeze", "optimizer", "batchnorm", "kernel", "bias", "dropout",
    "augment", "image_size", "crop", "batch_size", "patience", "seed", "weights",
    "from_scratch", "strict",
)


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


def _say(verbose, text):
    if verbose:
        print(text)


def _bar(verbose):
    return 1 if verbose in ("auto", 1, True) else 0
