"""What the workflows share: the train/validation split, the cache folder, versions."""

import os
import platform

from transferkit.errors import TransferkitError

# The feature cache's folder inside a run folder.
FEATURES_DIR = "features"


def scan_split(data, val, val_split, seed, strict=False, *, text=False, columns=None):
    """`(all of data, training set, validation set)`: `val`'s examples, or a split of `data`.

    Image folders, or, with `text`, labelled text files whose columns
    `columns` (a `transferkit.training.config.TextColumns`) names. With a
    `val` folder (file) its classes must be `data`'s; without one, a
    stratified `val_split` of `data` is drawn with `seed`.

    Example:

    >>> folder, train_set, val_set = scan_split("photos", None, 0.2, seed=0)  # doctest: +SKIP
    >>> data, train_set, val_set = scan_split("reviews.csv", None, 0.2, seed=0,
    ...                                       text=True)  # doctest: +SKIP
    """
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


def modality_of(backbone):
    """What `backbone` (a catalogue name or a `TrainingConfig`) reads; no Keras imported."""
    from transferkit.backbones.registry import get_backbone_config

    name = getattr(backbone, "backbone", backbone)
    return get_backbone_config(name).modality


def check_data(paths, modality):
    """Cheap checks of the data paths (`None`s skipped) before the long work starts."""
    if modality == "text":
        from transferkit.data.text import check_text_file as check
    else:
        from transferkit.data.images import check_image_folder as check
    for path in paths:
        if path is not None:
            check(path)


def read_labelled(data, text, strict=False, columns=None):
    """The labelled examples of one folder or file: an `ImageFolder` or a `TextFile`."""
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
