"""Test-time augmentation: a model's scores averaged over flipped and cropped views.

View 0 is the image itself, 1 its mirror image, 2 the centre 7/8 of it scaled
back to full size, 3 that crop's mirror image, 4-7 the four corner 7/8 crops.
`tta=N` averages the first `N` views: 2 (flips) is the usual choice for
photos, whose left and right are alike.

Example:

>>> import numpy as np
>>> x = np.arange(2 * 8 * 8 * 3, dtype="float32").reshape(2, 8, 8, 3)
>>> [v.shape for v in views(x, 3)]
[(2, 8, 8, 3), (2, 8, 8, 3), (2, 8, 8, 3)]
"""

import numpy as np

from transferkit.errors import TransferkitError

MAX_VIEWS = 8
CROP = 7 / 8  # the side of a cropped view, as a fraction of the image's


def check_views(tta):
    """`tta` if it is an int in `[1, MAX_VIEWS]` (or `None`), else a one-line error."""
    if tta is None:
        return None
    if isinstance(tta, bool) or not isinstance(tta, (int, np.integer)) \
            or not 1 <= tta <= MAX_VIEWS:
        raise TransferkitError(
            f"tta must be a number of views from 1 to {MAX_VIEWS} (2: the image and its mirror "
            f"image); got {tta!r}.")
    return int(tta)


def views(batch, n):
    """The first `n` views of a batch of images `(k, height, width, 3)`, each that shape."""
    n = check_views(n)
    batch = np.asarray(batch)
    centre = _crop(batch, "center") if n > 2 else None
    every = [lambda: batch, lambda: batch[:, :, ::-1], lambda: centre,
             lambda: centre[:, :, ::-1]] + [
        lambda where=where: _crop(batch, where)
        for where in ("top_left", "top_right", "bottom_left", "bottom_right")]
    return [view() for view in every[:n]]


def tta_scores(score, batch, n):
    """The mean of `score(view)` over the first `n` views of `batch` (`score`: images -> scores)."""
    return np.mean([np.asarray(score(view)) for view in views(batch, n)], axis=0)


def _crop(batch, where):
    """A `CROP` square-ish part of each image, resized back to the whole image's size."""
    import keras

    height, width = batch.shape[1:3]
    h, w = max(1, round(height * CROP)), max(1, round(width * CROP))
    top = {"center": (height - h) // 2, "top_left": 0, "top_right": 0,
           "bottom_left": height - h, "bottom_right": height - h}[where]
    left = {"center": (width - w) // 2, "top_left": 0, "bottom_left": 0,
            "top_right": width - w, "bottom_right": width - w}[where]
    part = batch[:, top:top + h, left:left + w].astype("float32")
    resized = keras.ops.image.resize(part, (height, width), interpolation="bilinear")
    return np.clip(keras.ops.convert_to_numpy(resized), 0, 255).astype(batch.dtype)
