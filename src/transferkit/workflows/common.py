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
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) \
            or not 0 < val_split < 1:
        raise TransferkitError(f"val_split must be in (0, 1), like 0.2; got {val_split!r}.")
    return (folder, *folder.split(val_split, seed=seed))


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
