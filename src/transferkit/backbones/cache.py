"""Where Keras keeps downloaded weights: `<KERAS_HOME>/models`.

`keras.utils.get_file` (which every `keras.applications` model calls for
`weights="imagenet"`) downloads into this folder once and reads from it
afterwards. It is resolved here the way `get_file` resolves it, so that
`weights_available` looks where Keras will look.
"""

import os

from transferkit._compat import keras_cache_dir

CACHE_SUBDIR = "models"


def keras_models_dir():
    """The folder `keras.applications` reads ImageNet weights from.

    Keras reads `KERAS_HOME` once, when it is imported (default
    `~/.keras`). When that folder cannot be written, `get_file` falls back
    to `/tmp/.keras`; so does this.

    Example:

    >>> keras_models_dir()  # doctest: +SKIP
    '/home/me/.keras/models'
    """
    return os.path.join(keras_cache_dir(), CACHE_SUBDIR)


def cached_weights_path(filename):
    """The path `filename` has (or would have) in the Keras weights cache."""
    return os.path.join(keras_models_dir(), filename)
