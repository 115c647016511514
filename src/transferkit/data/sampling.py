"""Balanced sampling: an epoch's samples drawn so that every class is equally likely.

With skewed classes, an alternative to weighing the rare class up in the loss
(`--class-weight balanced`) is to show it more often: each epoch serves `n`
samples drawn with replacement, sample `i` with probability
`1 / (k * n_c)` (`k` classes present, `n_c` samples of its class `c`), so that
a drawn sample is of each class with probability `1 / k`. Rare samples repeat
within an epoch, frequent ones are left out of some; over many epochs every
sample is seen. `AugmentedFeatures` and `LengthBuckets` take `balanced=True`
and draw each epoch's samples from their per-epoch generator.

Example:

>>> import numpy as np
>>> take = balanced_indices(np.array([0] * 90 + [1] * 10), np.random.default_rng(0))
>>> len(take), bool(abs((take >= 90).mean() - 0.5) < 0.15)
(100, True)
"""

import numpy as np

from transferkit.errors import TransferkitError


def inverse_frequency(labels):
    """Each sample's probability of being drawn: `1 / (k * n_c)`, summing to 1.

    Args:
        labels: the `n` class indices (ints >= 0).

    Example:

    >>> inverse_frequency([0, 0, 0, 1]).tolist()
    [0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.5]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer) \
            or labels.min() < 0:
        raise TransferkitError(
            f"Balanced sampling needs class indices, one int >= 0 per sample; got an array "
            f"of shape {labels.shape} ({labels.dtype}).")
    counts = np.bincount(labels)
    return 1.0 / (np.count_nonzero(counts) * counts[labels])


def balanced_indices(labels, rng):
    """`len(labels)` sample indices drawn with replacement, every class equally likely.

    Args:
        labels: the `n` class indices.
        rng: a NumPy `Generator` (seeded per epoch by the caller).

    Returns:
        An int array of `n` indices into `labels`.
    """
    p = inverse_frequency(labels)
    return rng.choice(len(p), size=len(p), p=p)
