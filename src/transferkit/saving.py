"""Reading and writing `.keras` files: clear errors in, nothing half-written out."""

import contextlib
import hashlib
import os
import uuid
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
    # transferkit's registered Keras objects (schedules, per-block optimizers,
    # in-model preprocessing) must be importable by name before loading.
    import transferkit.schedules  # noqa: F401  (also registers the optimizers)

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
    with atomic_output(path) as tmp:
        model.save(tmp, overwrite=True)


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary name beside `path`; renames it to `path` on success.

    The temporary file keeps `path`'s extension (Keras checks it) and sits in
    the same folder, so that `os.replace` is one step on one file system: a
    reader sees the old file or the complete new one, never half of it. On
    any error, or an interrupt, the temporary file is removed.

    Example:

    >>> with atomic_output("cache/model.weights.h5") as tmp:  # doctest: +SKIP
    ...     model.save_weights(tmp)
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    # Not mkstemp: its 0600 mode would stick to the result. The pid and a
    # random part keep concurrent writers apart.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_sha256(path):
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
