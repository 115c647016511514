"""Splits and folds for multi-label and numeric targets: every label and the whole range on both sides."""

import numpy as np
import pytest

from transferkit.data.splits import (
    binned_folds,
    binned_split,
    iterative_folds,
    iterative_split,
    stratified_split,
)
from transferkit.errors import TransferkitError


def multilabel(n=200, k=5, seed=0):
    """A random `(n, k)` 0/1 problem with label rates from 5% to 50%, correlated labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.05, 0.5, k)).astype(int)
    y[:, -1] |= y[:, 0]  # the last label co-occurs with the first
    return y


def assert_partition(train, val, n):
    assert train.dtype == val.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(n))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.2, 0.3])
def test_iterative_split_gives_each_label_its_share_within_one_example(seed, fraction):
    y = multilabel(seed=seed)
    train, val = iterative_split(y, fraction, seed=seed)
    assert_partition(train, val, len(y))
    positives = y.sum(axis=0)
    # The tolerance: each label's validation positives are within one example
    # of `fraction * positives`, i.e. its share within 1 / positives of fraction.
    assert np.all(np.abs(y[val].sum(axis=0) - fraction * positives) <= 1)
    assert np.all(np.abs(y[val].sum(axis=0) / positives - fraction) <= 1 / positives)
    assert abs(len(val) - fraction * len(y)) <= 3


def test_iterative_split_is_deterministic_and_seeded():
    y = multilabel()
    first, again = iterative_split(y, 0.2, seed=4), iterative_split(y, 0.2, seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], iterative_split(y, 0.2, seed=5)[1])


def test_a_label_with_two_positives_goes_one_to_each_side():
    y = np.zeros((30, 2), int)
    y[[3, 17], 0] = 1
    y[::3, 1] = 1
    train, val = iterative_split(y, 0.2)
    assert y[val, 0].sum() == 1 and y[train, 0].sum() == 1


@pytest.mark.parametrize("folds", [3, 5])
def test_iterative_folds_cover_every_example_once_with_positives_spread(folds):
    y = multilabel(seed=1)
    parts = iterative_folds(y, folds, seed=2)
    assert len(parts) == folds
    for train, val in parts:
        assert_partition(train, val, len(y))
    every_val = np.concatenate([val for _, val in parts])
    np.testing.assert_array_equal(np.sort(every_val), np.arange(len(y)))
    per_fold = np.stack([y[val].sum(axis=0) for _, val in parts])
    assert np.all(np.abs(per_fold - y.sum(axis=0) / folds) <= 1)
    assert np.all(np.abs(np.array([len(val) for _, val in parts]) - len(y) / folds) <= 3)
    again = iterative_folds(y, folds, seed=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(parts, again))


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_binned_split_covers_the_range_on_both_sides(fraction):
    rng = np.random.default_rng(0)
    values = rng.lognormal(size=150)  # skewed: a random split often misses the tail
    train, val = binned_split(values, fraction, seed=1)
    assert_partition(train, val, len(values))
    assert abs(len(val) - fraction * len(values)) <= 5
    deciles = np.searchsorted(np.quantile(values, np.linspace(0, 1, 11)[1:-1]), values)
    assert set(deciles[val]) == set(deciles[train]) == set(range(10))
    np.testing.assert_array_equal(val, binned_split(values, fraction, seed=1)[1])


def test_binned_split_keeps_the_share_on_small_or_constant_targets():
    train, val = binned_split(np.arange(20.0), 0.2)
    assert len(val) == 4  # 4 bins of 5, not 10 bins of 2 giving half to validation
    train, val = binned_split(np.ones((7, 1)), 0.3)
    assert_partition(train, val, 7)
    assert len(val) == 2


def test_binned_folds_are_stratified_kfold_on_quantile_bins():
    values = np.random.default_rng(3).normal(size=103)
    parts = binned_folds(values, 5, seed=0)
    every_val = np.sort(np.concatenate([val for _, val in parts]))
    np.testing.assert_array_equal(every_val, np.arange(103))
    bins = np.searchsorted(np.quantile(values, np.linspace(0, 1, 11)[1:-1]), values)
    for train, val in parts:
        assert_partition(train, val, 103)
        assert len(set(bins[val])) >= 9
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(parts, binned_folds(values, 5)))


@pytest.mark.parametrize("call, words", [
    (lambda: iterative_split(multilabel(), 1.0), "Invalid val_fraction"),
    (lambda: iterative_split(multilabel(), 0.2, seed=-1), "Invalid seed"),
    (lambda: iterative_split(np.array([[1, 0], [1, 1], [0, 0]]), 0.5,
                             label_names=["cat", "dog"]), "label 'dog' has 1 positive"),
    (lambda: iterative_split(np.array([[1, 0], [1, 1], [0, 0]]), 0.5), "label '1' has 1"),
    (lambda: iterative_split(np.array([[1, 1]]), 0.5), "Cannot split 1 example"),
    (lambda: iterative_split(np.array([[0, 2], [1, 1]]), 0.5), "array of 0s and 1s"),
    (lambda: iterative_split(np.array([1, 0, 1]), 0.5), "array of 0s and 1s"),
    (lambda: iterative_split(multilabel(k=2), 0.2, label_names=["a"]), "2 labels"),
    (lambda: iterative_folds(multilabel(), 1), "Invalid folds"),
    (lambda: iterative_folds(np.eye(4, 2)[[0, 1, 0, 1]], 5), "at most 4 folds"),
    (lambda: binned_split([1.0, np.nan, 2.0], 0.2), "finite numbers"),
    (lambda: binned_split([1.0], 0.2), "Cannot split 1"),
    (lambda: binned_split(np.arange(10.0), 0), "Invalid val_fraction"),
    (lambda: binned_folds(np.arange(10.0), 11), "at most 10 folds"),
    (lambda: binned_folds(np.arange(10.0), 2, seed="a"), "Invalid seed"),
])
def test_bad_input_is_one_clear_error(call, words):
    with pytest.raises(TransferkitError, match=words) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_stratified_split_is_unchanged():
    labels = np.repeat([0, 1, 2], [5, 8, 12])
    train, val = stratified_split(labels, ["a", "b", "c"], 0.2, seed=0)
    assert_partition(train, val, 25)
    assert np.bincount(labels[val]).tolist() == [1, 2, 2]
