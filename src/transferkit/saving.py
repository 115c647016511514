"""Reading and writing `.keras` files: clear errors in, nothing half-written out."""

import errno
import hashlib
import math
import os
import shutil
import zipfile

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.outputs import output_file


def load_model(path, **kwargs):
    """Loads a `.keras` model file, with a one-line error for a bad path.

    The Keras objects the file names must be registered: a model compiled
    with transferkit's optimizers or schedules loads with `compile=False`
    here, or compiled through `transferkit.load_model`, which registers them.

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


def save_model(model, path, overwrite=False):
    """Saves `model` to `path` atomically: a complete file or none at all.

    Writes to a temporary `.keras` file beside `path`, then moves it into
    place, so an interrupted save never leaves a truncated model behind
    (`transferkit.outputs.output_file`).

    Args:
        model: a Keras model.
        path: destination; must end in `.keras`.
        overwrite: replace an existing file. Defaults to `False`: an
            existing file is an error, never silently replaced.

    Example:

    >>> save_model(model, "model.keras")  # doctest: +SKIP
    """
    with output_file(path, overwrite=overwrite, suffix=".keras") as tmp:
        model.save(tmp, overwrite=True)


def save_weights(model, path):
    """`model.save_weights(path)`, refused up front when the disk cannot take it.

    HDF5 does not recover from a write that fails half-way (full disk): the
    open file's handles crash the interpreter when they are freed (seen with
    h5py 3.14 and HDF5 1.14.6: a segmentation fault at exit). So the free
    space is checked first, against the weights' size with room for HDF5's
    own records, and a shortfall is the `OSError(ENOSPC)` that the write
    would have raised, before any byte is written.

    Args:
        model: a Keras model.
        path: a `.weights.h5` file.

    Example:

    >>> save_weights(model, "best.weights.h5")  # doctest: +SKIP
    """
    path = os.fspath(path)
    needed = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights)
    needed = int(needed * 1.05) + (1 << 20)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device ({needed:,} bytes needed, "
                      f"{free:,} free)", path)
    model.save_weights(path, overwrite=True)


def file_sha256(path):
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
