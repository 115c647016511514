"""What the workflows share: the train/validation split, the cache folder, versions."""

import os
import platform

from transferkit.errors import TransferkitError

# The feature cache's folder inside a run folder.
FEATURES_DIR = "features"


def scan_split(data_dir, val, val_split, seed, strict=False):
    """`(folder, training set, validation set)`: `val`'s images, or a split of `data_dir`.

    With a `val` folder its classes must be `data_dir`'s; without one, a
    stratified `val_split` of `data_dir` is drawn with `seed`.

    Example:

    >>> folder, train_set, val_set = scan_split("photos", None, 0.2, seed=0)  # doctest: +SKIP
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
    _check_val_split(val_split)
    return (folder, *folder.split(val_split, seed=seed))


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


def read_split(data, val, val_split, seed, columns=None):
    """`(file, training texts, validation texts)`: `val`'s rows, or a split of `data`.

    The text counterpart of `scan_split`: `columns`, a
    `transferkit.training.config.TextColumns`, says where the texts and labels
    are; with a `val` file its classes must be `data`'s.

    Example:

    >>> data, train_set, val_set = read_split("reviews.csv", None, 0.2, seed=0)  # doctest: +SKIP
    """
    from transferkit.data.text import read_text_file
    from transferkit.training.config import TextColumns

    reading = (columns or TextColumns()).read_arguments()
    data_file = read_text_file(data, **reading)
    if val is not None:
        val_file = read_text_file(val, **reading)
        if val_file.class_names != data_file.class_names:
            raise TransferkitError(
                f"The validation file's classes {val_file.class_names} differ from the "
                f"training file's {data_file.class_names}; label both with the same classes."
            )
        return data_file, data_file, val_file
    _check_val_split(val_split)
    return (data_file, *data_file.split(val_split, seed=seed))


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
