"""Reading and writing `.keras` files: clear errors in, nothing half-written out."""

import os
import tempfile
import zipfile

import keras

from transferkit.errors import TransferkitError


def load_model(path, **kwargs):
    """Loads a `.keras` model file, with a one-line error for a bad path.

    Args:
        path: path to a `.keras` file written by `model.save`.
        **kwargs: passed to `keras.saving.load_model` (e.g. `compile=False`).

    Example:

    >>> model = load_model("model.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TransferkitError(f"No such file: {path}; check the path.")
    if os.path.isdir(path):
        raise TransferkitError(f"{path} is a folder; give the path of a .keras file.")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise TransferkitError(
            f"{path} is not a Keras model file: expected a .keras archive "
            "written by model.save('model.keras')."
        )
    try:
        return keras.saving.load_model(path, **kwargs)
    except Exception as e:  # Keras raises many types for a damaged archive.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TransferkitError(f"Could not load {path}: {reason}") from e


def save_model(model, path):
    """Saves `model` to `path` atomically: a complete file or none at all.

    Writes to a temporary `.keras` file beside `path`, then renames it, so an
    interrupted save never leaves a truncated model behind.

    Args:
        model: a Keras model.
        path: destination; must end in `.keras`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise TransferkitError(f"Output {path} must end in .keras.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise TransferkitError(f"Output folder {directory} does not exist; create it first.")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
