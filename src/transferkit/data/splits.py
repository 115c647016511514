"""The stratified train/validation split shared by image folders and text files."""

import math

import numpy as np

from transferkit.errors import TransferkitError


def stratified_split(labels, class_names, val_fraction, seed=0, *, noun="example"):
    """`(train indices, validation indices)`: each class split alike.

    Each class gives `round(count * val_fraction)` of its members to
    validation, at least one and never all, so every class is on both sides.
    Both index arrays are sorted: the parts keep the data's order.

    Args:
        labels: `np.int64` array of class indices.
        class_names: the class names; label `i` is `class_names[i]`.
        val_fraction: the share of each class for validation, in (0, 1).
        seed: an integer, the same one gives the same split; `None` for a
            different split each call. Defaults to 0.
        noun: what an example is, for error messages (`"image"`, `"text"`).

    Example:

    >>> train, val = stratified_split(np.array([0, 0, 0, 1, 1, 1]), ["a", "b"], 0.34)
    >>> len(train), len(val)
    (4, 2)
    """
    if isinstance(val_fraction, bool) or not (
        isinstance(val_fraction, (int, float, np.number)) and 0 < val_fraction < 1
    ):
        raise TransferkitError(
            f"Invalid val_fraction {val_fraction!r}: use a number between "
            "0 and 1 (exclusive), such as 0.2."
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise TransferkitError(f"Invalid seed {seed!r}: use a non-negative integer, or None.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise TransferkitError(
                f"Cannot split: class '{name}' has {len(members)} {noun}(s); "
                "each class needs at least 2, one for each side."
            )
        n_val = math.floor(len(members) * val_fraction + 0.5)
        n_val = min(max(n_val, 1), len(members) - 1)
        val.append(rng.choice(members, size=n_val, replace=False))
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val
