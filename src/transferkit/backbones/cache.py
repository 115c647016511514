"""Where Keras keeps downloaded weights: `<KERAS_HOME>/models`.

`keras.utils.get_file` (which every `keras.applications` model calls for
`weights="imagenet"`) downloads into this folder once and reads from it
afterwards. It is resolved here the way `get_file` resolves it, so that
`weights_available` looks where Keras will look, with one exception: when
the folder cannot be written, `get_file` falls back to the world-writable
`/tmp/.keras`, where anyone could have left files. transferkit does not: it
neither reads its own caches from there nor writes them there.
"""

import os

from transferkit._compat import keras_cache_dir

CACHE_SUBDIR = "models"


def keras_models_dir():
    """The folder `keras.applications` reads ImageNet weights from.

    Keras reads `KERAS_HOME` once, when it is imported (default
    `~/.keras`). When that folder cannot be written, `get_file` falls back
    to `/tmp/.keras`; this does not (see `transferkit._compat.keras_cache_dir`).

    Example:

    >>> keras_models_dir()  # doctest: +SKIP
    '/home/me/.keras/models'
    """
    return os.path.join(keras_cache_dir(), CACHE_SUBDIR)


def cached_weights_path(filename):
    """The path `filename` has (or would have) in the Keras weights cache."""
    return os.path.join(keras_models_dir(), filename)


def models_dir_writable():
    """Whether `keras_models_dir()` can be written (created first if need be).

    Asks the operating system (`os.access`) about the folder, or, while it
    does not exist, about the nearest path above it that does (which must be
    a folder).

    Example:

    >>> models_dir_writable()  # doctest: +SKIP
    True
    """
    folder = os.path.abspath(keras_models_dir())
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    return os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)
