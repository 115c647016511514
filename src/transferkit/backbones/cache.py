"""Where Keras keeps downloaded weights: `<KERAS_HOME>/models`.

`keras.utils.get_file` (which every `keras.applications` model calls for
`weights="imagenet"`) downloads into this folder once and reads from it
afterwards. It is resolved here the way `get_file` resolves it, so that
`weights_available` looks where Keras will look.
"""

import os
import tempfile

from keras.src.backend import config as keras_config

CACHE_SUBDIR = "models"


def keras_models_dir():
    """The folder `keras.applications` reads ImageNet weights from.

    Keras reads `KERAS_HOME` once, when it is imported (default
    `~/.keras`); `keras_home()` returns that value. When the folder cannot be
    written, `get_file` falls back to `/tmp/.keras`; so does this.
    """
    base = os.path.expanduser(keras_config.keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(base, CACHE_SUBDIR)


def cached_weights_path(filename):
    """The path `filename` has (or would have) in the Keras weights cache."""
    return os.path.join(keras_models_dir(), filename)
