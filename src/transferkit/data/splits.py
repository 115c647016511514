"""Train/validation splits and cross-validation folds that keep every target alike.

One function per kind of target, each keeping both sides representative:

- `stratified_split`: single-label classes, each class split alike.
- `iterative_split` and `iterative_folds`: multi-label `(n, k)` 0/1 targets,
  by iterative stratification, each label's positives split alike.
- `binned_split` and `binned_folds`: a numeric (regression) target, stratified
  on up to 10 quantile bins of it, so that both sides cover its whole range
  (a plain random split of a few hundred examples can leave the validation
  side without the extremes, and its error then flatters the model).

All return sorted `np.int64` index arrays: each part keeps the data's order.
"""

import math
import numbers

import numpy as np

from transferkit.errors import TransferkitError

MAX_BINS = 10


def _check_fraction(val_fraction):
    if isinstance(val_fraction, bool) or not (
        isinstance(val_fraction, (int, float, np.number)) and 0 < val_fraction < 1
    ):
        raise TransferkitError(
            f"Invalid val_fraction {val_fraction!r}: use a number between "
            "0 and 1 (exclusive), such as 0.2."
        )


def _check_seed(seed):
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise TransferkitError(f"Invalid seed {seed!r}: use a non-negative integer, or None.")


def _check_folds(folds, n, noun):
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise TransferkitError(f"Invalid folds {folds!r}: use an integer of at least 2, such as 5.")
    if folds > n:
        raise TransferkitError(
            f"Cannot make {folds} folds of {n} {noun}(s): use at most {n} folds."
        )


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
    _check_fraction(val_fraction)
    _check_seed(seed)
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


def iterative_split(targets, val_fraction, seed=0, *, noun="example", label_names=None):
    """`(train indices, validation indices)` of multi-label data, each label split alike.

    Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011, "On the
    stratification of multi-label data", ECML PKDD): labels are taken rarest
    first; each example carrying the label goes to the side that still
    wants the most of that label's positives (then the side that wants the
    most examples, then at random), and counts against every label it
    carries. Each label wants `round(positives * val_fraction)` positives in
    validation, at least one and never all; examples without labels fill
    the sides up to `round(n * val_fraction)` validation examples. Since an
    example carries all its labels to one side, the shares are close to
    `val_fraction`, not exact (`tests/test_splits.py` states the tolerance).

    Args:
        targets: an `(examples, labels)` array of 0s and 1s.
        val_fraction: the share of each label's positives (and of the
            examples) for validation, in (0, 1).
        seed: an integer, the same one gives the same split; `None` for a
            different split each call. Defaults to 0.
        noun: what an example is, for error messages. Defaults to
            `"example"`.
        label_names: names of the labels, for error messages. Defaults to
            their indices.

    Example:

    >>> targets = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [0, 0]])
    >>> train, val = iterative_split(targets, 0.34, seed=0)
    >>> len(train) + len(val), bool(targets[val].sum(axis=0).min() >= 1)
    (6, True)
    """
    _check_fraction(val_fraction)
    _check_seed(seed)
    targets = _checked_targets(targets, noun, label_names)
    n = len(targets)
    positives = targets.sum(axis=0)
    val_wanted = np.clip(np.floor(positives * val_fraction + 0.5), 1, positives - 1)
    wanted = np.stack([positives - val_wanted, val_wanted]).astype(float)
    n_val = min(max(math.floor(n * val_fraction + 0.5), 1), n - 1)
    side = _iterative_assign(targets, wanted, np.array([n - n_val, n_val], float),
                             np.random.default_rng(seed))
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def iterative_folds(targets, folds, seed=0, *, noun="example", label_names=None):
    """`[(train indices, validation indices)]` for k-fold cross-validation of multi-label data.

    Iterative stratification (see `iterative_split`) into `folds` parts of
    equal wanted size, each wanting `1 / folds` of every label's positives;
    part `i` is the validation side of fold `i`. Every example is in exactly
    one validation part. A label with fewer positives than `folds` is
    missing from some validation parts; its positives go to different parts
    first, so each training side has one unless the labels they co-occur
    with place them all in one part.

    Args:
        targets: an `(examples, labels)` array of 0s and 1s.
        folds: the number of folds, from 2 to the number of examples.
        seed: an integer, the same one gives the same folds; `None` for
            different folds each call. Defaults to 0.
        noun: what an example is, for error messages. Defaults to
            `"example"`.
        label_names: names of the labels, for error messages. Defaults to
            their indices.

    Example:

    >>> targets = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [0, 1]])
    >>> [len(val) for _, val in iterative_folds(targets, 3)]
    [2, 2, 2]
    """
    _check_seed(seed)
    targets = _checked_targets(targets, noun, label_names)
    n = len(targets)
    _check_folds(folds, n, noun)
    folds = int(folds)
    wanted = np.tile(targets.sum(axis=0) / folds, (folds, 1)).astype(float)
    part = _iterative_assign(targets, wanted, np.full(folds, n / folds),
                             np.random.default_rng(seed))
    return [(np.flatnonzero(part != i), np.flatnonzero(part == i)) for i in range(folds)]


def _checked_targets(targets, noun, label_names):
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] == 0 or not (
        targets.dtype == bool or np.issubdtype(targets.dtype, np.number)
    ) or not np.isin(targets, (0, 1)).all():
        raise TransferkitError(
            f"Invalid multi-label targets of shape {targets.shape}: use an (examples, labels) "
            "array of 0s and 1s."
        )
    if len(targets) < 2:
        raise TransferkitError(
            f"Cannot split {len(targets)} {noun}(s): use at least 2, one for each side."
        )
    names = list(label_names) if label_names is not None else list(range(targets.shape[1]))
    if len(names) != targets.shape[1]:
        raise TransferkitError(
            f"Got {len(names)} label names for {targets.shape[1]} labels: give one per label."
        )
    targets = targets.astype(np.int64)
    positives = targets.sum(axis=0)
    if positives.min() < 2:
        rare = int(np.argmin(positives))
        raise TransferkitError(
            f"Cannot split: label '{names[rare]}' has {positives[rare]} positive {noun}(s); "
            "each label needs at least 2, one for each side."
        )
    return targets


def _iterative_assign(targets, wanted, sizes, rng):
    """The part of each example, by Sechidis et al.'s algorithm.

    `wanted[j, l]`: how many positives of label `l` part `j` still wants;
    `sizes[j]`: how many examples part `j` still wants. Both are used up as
    examples are placed (and may go negative: an example brings all its
    labels).
    """
    wanted, sizes = wanted.copy(), sizes.copy()
    part = np.full(len(targets), -1)
    unplaced = targets.sum(axis=0)
    while unplaced.max() > 0:
        active = np.flatnonzero(unplaced > 0)
        rarest = active[unplaced[active] == unplaced[active].min()]
        label = rarest[rng.integers(len(rarest))] if len(rarest) > 1 else rarest[0]
        carriers = np.flatnonzero((targets[:, label] == 1) & (part < 0))
        for example in rng.permutation(carriers):
            j = _neediest(wanted[:, label], sizes, rng)
            part[example] = j
            wanted[j] -= targets[example]
            sizes[j] -= 1
            unplaced -= targets[example]
    for example in rng.permutation(np.flatnonzero(part < 0)):
        j = _neediest(sizes, sizes, rng)
        part[example] = j
        sizes[j] -= 1
    return part


def _neediest(wants, sizes, rng):
    """The part wanting the most, then the one wanting the most examples, then at random."""
    best = np.flatnonzero(wants == wants.max())
    if len(best) > 1:
        best = best[sizes[best] == sizes[best].max()]
    return best[rng.integers(len(best))] if len(best) > 1 else best[0]


def binned_split(values, val_fraction, seed=0, *, noun="example"):
    """`(train indices, validation indices)` of a numeric target, both covering its range.

    The values are cut into up to 10 quantile bins by rank (equal counts;
    equal values may straddle a bin edge), then `stratified_split` splits
    every bin alike. Fewer bins are used when a bin would be too small to
    give validation one of its members at `val_fraction` (fewer than
    `1 / min(val_fraction, 1 - val_fraction)` examples), so the validation
    share stays close to `val_fraction`. A constant target is one bin: a
    random split.

    Args:
        values: a 1-D array of finite numbers (an `(n, 1)` column works too).
        val_fraction: the share of each bin for validation, in (0, 1).
        seed: an integer, the same one gives the same split; `None` for a
            different split each call. Defaults to 0.
        noun: what an example is, for error messages. Defaults to
            `"example"`.

    Example:

    >>> values = np.arange(50, dtype=float)
    >>> train, val = binned_split(values, 0.2)
    >>> len(val), int(values[val].min()) < 10, int(values[val].max()) >= 40
    (10, True, True)
    """
    _check_fraction(val_fraction)
    values = _checked_values(values, noun)
    n = len(values)
    bins = min(MAX_BINS, max(1, math.floor(n * min(val_fraction, 1 - val_fraction))))
    labels = _quantile_bins(values, bins)
    return stratified_split(labels, [f"bin {b}" for b in range(bins)], val_fraction, seed,
                            noun=noun)


def binned_folds(values, folds, seed=0, *, noun="example"):
    """`[(train indices, validation indices)]` for k-fold cross-validation of a numeric target.

    scikit-learn's `StratifiedKFold` (shuffled, seeded) on up to 10 quantile
    bins of the values (as in `binned_split`), each bin holding at least
    `folds` examples, so every validation fold covers the target's range.

    Args:
        values: a 1-D array of finite numbers (an `(n, 1)` column works too).
        folds: the number of folds, from 2 to the number of examples.
        seed: an integer, the same one gives the same folds; `None` for
            different folds each call. Defaults to 0.
        noun: what an example is, for error messages. Defaults to
            `"example"`.

    Example:

    >>> [len(val) for _, val in binned_folds(np.arange(20.0), 4)]
    [5, 5, 5, 5]
    """
    from sklearn.model_selection import StratifiedKFold

    _check_seed(seed)
    values = _checked_values(values, noun)
    n = len(values)
    _check_folds(folds, n, noun)
    labels = _quantile_bins(values, min(MAX_BINS, n // int(folds)))
    splitter = StratifiedKFold(int(folds), shuffle=True, random_state=seed)
    return [(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64))
            for train, val in splitter.split(np.zeros(n), labels)]


def _checked_values(values, noun):
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number) or values.dtype == bool \
            or not np.isfinite(values).all():
        raise TransferkitError(
            f"Invalid numeric target of shape {values.shape} ({values.dtype}): use a 1-D array "
            "of finite numbers."
        )
    if len(values) < 2:
        raise TransferkitError(
            f"Cannot split {len(values)} {noun}(s): use at least 2, one for each side."
        )
    return values


def _quantile_bins(values, bins):
    """The bin of each value: `bins` bins of equal counts (within one), by rank."""
    ranks = np.empty(len(values), np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks * bins // len(values)
