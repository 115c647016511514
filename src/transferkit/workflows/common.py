"""What the workflows share: the train/validation split, the cache folder, versions."""

import os
import platform

from transferkit.errors import TransferkitError

# The feature cache's folder inside a run folder.
FEATURES_DIR = "features"
# What the log calls a task's targets, and what its model outputs (config.json).
TARGET_NOUNS = {"classes": "classes", "multilabel": "labels", "regression": "target"}
TASK_OUTPUTS = {"multilabel": "label probabilities", "regression": "values"}


def scan_split(data, val, val_split, seed, strict=False, *, text=False, columns=None,
               table=None):
    """`(all of data, training set, validation set)`: `val`'s examples, or a split of `data`.

    Image folders, or, with `text`, labelled text files whose columns
    `columns` (a `transferkit.training.config.TextColumns`) names, or image
    folders labelled by the tables of `table` (a `LabelTable` whose `labels`
    is set; rows skipped as `columns.skip_bad_rows` says). With a `val`
    folder (file) its classes must be `data`'s; without one, a stratified
    `val_split` of `data` is drawn with `seed` (`ImageTable.split` for
    labels and numbers).

    Example:

    >>> folder, train_set, val_set = scan_split("photos", None, 0.2, seed=0)  # doctest: +SKIP
    >>> data, train_set, val_set = scan_split("reviews.csv", None, 0.2, seed=0,
    ...                                       text=True)  # doctest: +SKIP
    """
    if table is not None and table.labels is not None:
        return _scan_split_tables(data, val, val_split, seed, strict, table, columns)
    found = read_labelled(data, text, strict, columns)
    if val is not None:
        val_set = read_labelled(val, text, strict, columns)
        if val_set.class_names != found.class_names:
            kind, fix = ("file", "label both with the same classes") if text else (
                "folder", "use the same subfolder names")
            raise TransferkitError(
                f"The validation {kind}'s classes {val_set.class_names} differ from the "
                f"training {kind}'s {found.class_names}; {fix}."
            )
        return found, found, val_set
    _check_val_split(val_split)
    return (found, *found.split(val_split, seed=seed))


def _scan_split_tables(data, val, val_split, seed, strict, table, columns):
    from transferkit.data.tables import read_label_table, table_task

    skip = bool(columns is not None and columns.skip_bad_rows)

    def read(folder, labels, task):
        return read_label_table(folder, labels, strict=strict,
                                **{**table.read_arguments(skip), "task": task})

    found = read_labelled(data, False, strict, columns, table)
    if val is None:
        _check_val_split(val_split)
        return (found, *found.split(val_split, seed=seed))
    if table.val_labels is None:
        raise TransferkitError("A --val folder with --labels needs its own table: pass "
                               "--val-labels TABLE (or leave --val out to split the data).")
    val_set = read(val, table.val_labels, table_task(found))
    if val_set.class_names != found.class_names and table_task(found) != "regression":
        raise TransferkitError(
            f"The validation table's labels {val_set.class_names} differ from the training "
            f"table's {found.class_names}; label both with the same names.")
    return found, found, val_set


def check_table(table, text):
    """Cheap checks of a `LabelTable`'s files before the long work starts."""
    if table is None or table.labels is None:
        if table is not None and table.val_labels is not None:
            raise TransferkitError("--val-labels goes with --labels (the training table).")
        return
    if text:
        raise TransferkitError("--labels tables label image folders; a text file carries its "
                               "labels in a column (--label-column).")
    from transferkit.data.tables import check_label_table

    for path in (table.labels, table.val_labels):
        if path is not None:
            check_label_table(path)


def devices_of(backbone, options):
    """The `devices` a workflow trains on: given in `options`, else its `TrainingConfig`'s."""
    return options.get("devices", getattr(backbone, "devices", 1))


def modality_of(backbone, devices=1):
    """What `backbone` (a name, a path or a `TrainingConfig`) reads.

    A catalogue name imports no Keras; a path reads its model. Several
    `devices` (`devices_of`) are set up first (`transferkit.training.
    distribution.set_up_early`): TensorFlow fixes its devices at its first
    operation, which reading a model is.
    """
    from transferkit.backbones.source import resolve_backbone
    from transferkit.training.distribution import set_up_early

    set_up_early(devices)
    name = getattr(backbone, "backbone", backbone)
    return resolve_backbone(name, getattr(backbone, "cut_at", None)).modality


def as_follower(run, **arguments):
    """Runs workflow `run` in a process that trains with others but is not process 0.

    It trains as process 0 does (the engine needs every process), but its
    files go to a temporary folder, removed afterwards: only process 0
    writes. The result's `out` is `None`.
    """
    import tempfile

    from transferkit.training.distribution import following

    with tempfile.TemporaryDirectory(prefix="transferkit-follower-") as scratch, following():
        if "out" in arguments:
            arguments["out"] = os.path.join(scratch, "run")
        if "plot" in arguments:
            arguments["plot"] = None
        changed = {"cache_dir": None, "report": False, "overwrite": False}
        result = run(**{**arguments, **{k: v for k, v in changed.items() if k in arguments}})
    if isinstance(result, dict) and "out" in result:
        result["out"] = None
    return result


def check_data(paths, modality):
    """Cheap checks of the data paths (`None`s skipped) before the long work starts."""
    if modality == "text":
        from transferkit.data.text import check_text_file as check
    else:
        from transferkit.data.images import check_image_folder as check
    for path in paths:
        if path is not None:
            check(path)


def read_labelled(data, text, strict=False, columns=None, table=None):
    """The labelled examples of one folder or file: an `ImageFolder`, `ImageTable` or `TextFile`.

    With `table` (a `LabelTable` whose `labels` is set) the images' labels
    come from it (`read_label_table`).
    """
    if table is not None and table.labels is not None:
        from transferkit.data.tables import read_label_table

        skip = bool(columns is not None and columns.skip_bad_rows)
        return read_label_table(data, table.labels, strict=strict,
                                **table.read_arguments(skip))
    if text:
        from transferkit.data.text import read_text_file
        from transferkit.training.config import TextColumns

        return read_text_file(data, **(columns or TextColumns()).read_arguments())
    from transferkit.data.images import scan_image_folder

    return scan_image_folder(data, strict=strict)


def model_inputs(trainer, examples):
    """`(x, files)`: what `trainer`'s model reads for `examples`, and the files (images).

    Images are streamed (`ImageFiles`: decoded batch by batch); texts become
    token ids (`Trainer.encode`), with no files.
    """
    if trainer.text:
        return trainer.encode(examples.texts), None
    from transferkit.data.stream import ImageFiles

    return ImageFiles(examples.files, trainer.size, crop=trainer.config.crop), examples.files


def take(x, indices):
    """The examples of `x` at `indices`: a lazy `subset` of images, rows of token ids."""
    return x.subset(indices) if hasattr(x, "subset") else x[indices]


def input_description(trainer):
    """The model's input, for the log and config.json."""
    if trainer.text:
        return f"texts of {trainer.size} tokens", {"max_length": trainer.size}
    return (f"images at {trainer.size}x{trainer.size}",
            {"image_size": [trainer.size, trainer.size], "crop": trainer.config.crop})


def skipped_record(examples, text):
    """What metrics.json says was skipped: rows of a text file, or image files."""
    if text:
        return {"skipped_rows": [line for line, _ in examples.skipped]}
    return {"skipped_files": [str(p) for p, _ in examples.skipped]}


def texts_digest(texts, labels):
    """A SHA-256 of texts and their labels: which data a resumed run had."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(json.dumps([text, int(label)]).encode())
    return digest.hexdigest()


def backbone_record(trainer):
    """What config.json says of the backbone: its catalogue name, and your model's file.

    A reused model (`--backbone PATH`) is named by its catalogue backbone when
    it has one (so a model reused from it keeps the blocks), else by its path;
    `backbone_source` gives the file, its SHA-256 and the cut.
    """
    if not trainer.reused:
        return {"backbone": trainer.backbone.name}
    return {"backbone": trainer.backbone.catalogue or trainer.config.backbone,
            "backbone_source": trainer.backbone.describe()}


def say_source(trainer):
    """Says where a reused model (`--backbone PATH`) was cut, and what it brings."""
    if not trainer.reused:
        return
    source = trainer.backbone
    blocks = (f"; its blocks are {source.catalogue}'s" if source.blocks else
              "; no named blocks (freeze plans: last:N, fraction:F, from:LAYER)")
    trainer.say(f"Backbone: {source.path} ({_SOURCE_KINDS[source.kind]}, SHA-256 "
                f"{(source.sha256 or '-')[:12]}), cut at {source.cut_at!r}"
                f"{' (auto)' if trainer.config.cut_at in (None, 'auto') else ''}: "
                f"{source.parameters:,} parameters, {source.default_size}x"
                f"{source.default_size} images in{blocks}. The file is only read.")


_SOURCE_KINDS = {"keras": "a .keras file", "run": "a transferkit run",
                 "preset": "a KerasHub preset folder"}


def targets_digest(*targets):
    """A SHA-256 of label or number arrays: which targets a resumed run had."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for values in targets:
        digest.update(np.ascontiguousarray(values, dtype="float32").tobytes())
    return digest.hexdigest()


def target_summary(task, metrics):
    """One line of a multi-label or regression run's validation figures."""
    if task == "regression":
        return (f"val MAE {metrics['val_mae']:.4g}, RMSE {metrics['val_rmse']:.4g}, R\u00b2 "
                + ("n/a" if metrics["val_r2"] is None else f"{metrics['val_r2']:.4f}"))
    return (f"val micro-F1 {metrics['val_micro_f1']:.4f}, macro-F1 "
            f"{metrics['val_macro_f1']:.4f}, mAP {metrics['val_mean_average_precision']:.4f} "
            "(thresholds tuned on the validation set)")


def _check_val_split(val_split):
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) \
            or not 0 < val_split < 1:
        raise TransferkitError(f"val_split must be in (0, 1), like 0.2; got {val_split!r}.")


def plot_fit(trainer, fitted, path, title):
    """The curves of one `Trainer.fit`: the history, or a linear head's C search."""
    from transferkit.evaluation.plots import plot_grid, plot_history

    if trainer.config.linear:
        plot_grid(fitted["linear"].cv_results_, path, title=f"{title}: {trainer.config.head}")
    else:
        plot_history(fitted["history"]["history"], path,
                     phases=fitted["history"]["phases"], title=title)


def checked_cache_dir(cache_dir):
    """`cache_dir` with `~` expanded, or `None`; a file there is an error."""
    if cache_dir is None:
        return None
    path = os.path.expanduser(os.fspath(cache_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise TransferkitError(f"cache_dir {path} is a file; give a folder.")
    return path


def versions():
    """The versions a run records: transferkit, Keras and its backend, Python, NumPy."""
    import keras
    import numpy as np

    from transferkit.version import __version__

    return {"transferkit": __version__, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version(),
            "numpy": np.__version__}
