"""Weights for skewed classes, and the metrics that matter when classes are skewed.

With 10 ants for each bee, a classifier that says "ant" to everything is 91 %
accurate. Weighting each example by its class's weight makes the loss count
the classes as the weights say: `"balanced"` gives class `c` the weight
`n / (k * n_c)` (scikit-learn's rule: every class then weighs as much in the
loss), or a file names a weight per class. The weights reach the loss as
per-example sample weights (the cached head phase, the plain and streamed
paths alike) and the linear heads as scikit-learn's `class_weight`.

Nothing here imports Keras: the configuration checks `class_weight` first.

Example:

>>> import numpy as np
>>> class_weights("balanced", np.array([0, 0, 0, 1]), ["ant", "bee"])
array([0.6666667, 2.       ], dtype=float32)
"""

import csv
import json
import math
import os

import numpy as np

from transferkit.errors import TransferkitError

NONE, BALANCED = "none", "balanced"


def check_class_weight(name, value):
    """`value` normalized: `None`, `"balanced"`, a file path, or a `{class: weight}` dict."""
    if value is None or (isinstance(value, str) and value.strip().lower() == NONE):
        return None
    if isinstance(value, str) and value.strip().lower() == BALANCED:
        return BALANCED
    if isinstance(value, dict):
        for label, weight in value.items():
            _check_weight(weight, f"{name}[{label!r}]")
        return {str(label): float(weight) for label, weight in value.items()}
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise TransferkitError(
                f"{name}={path!r}: no such file; give 'balanced', 'none', or a .json/.csv file "
                "of class weights.")
        if not path.lower().endswith((".json", ".csv")):
            raise TransferkitError(
                f"{name}={path!r}: class weights are read from a .json file "
                '({"ants": 1, "bees": 10}) or a .csv file (class,weight rows).')
        read_weight_file(path)  # a malformed file fails now, before any work
        return path
    raise TransferkitError(
        f"{name} must be 'balanced', 'none', a file of class weights or a dict; got {value!r}.")


def read_weight_file(path):
    """`{class name: weight}` from a `.json` object or a `.csv` of `class,weight` rows."""
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                found = json.load(handle)
            if not isinstance(found, dict):
                raise TransferkitError(
                    f"{path}: expected a JSON object of class weights, like "
                    '{"ants": 1, "bees": 10}.')
            rows = [(str(k), v, k) for k, v in found.items()]
        else:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = []
                for line, row in enumerate(csv.reader(handle), start=1):
                    if not row or all(not cell.strip() for cell in row):
                        continue
                    if len(row) != 2:
                        raise TransferkitError(
                            f"{path}, line {line}: expected 'class,weight', got {len(row)} "
                            "fields.")
                    rows.append((row[0].strip(), row[1].strip(), f"line {line}"))
            if rows and rows[0][1].lower() == "weight":
                rows = rows[1:]  # a header
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TransferkitError(f"Cannot read class weights from {path}: {e}.") from None
    weights = {}
    for label, weight, where in rows:
        if label in weights:
            raise TransferkitError(f"{path}: class {label!r} has two weights ({where}).")
        weights[label] = _check_weight(weight, f"{path}: the weight of {label!r}")
    if not weights:
        raise TransferkitError(f"{path} holds no class weights.")
    return weights


def class_weights(spec, labels, class_names):
    """The weight of each class (`float32`, in `class_names` order), or `None` for `spec=None`.

    Args:
        spec: `None`, `"balanced"`, a `.json`/`.csv` file or a
            `{class name: weight}` dict (checked by `check_class_weight`).
        labels: the training labels, class indices.
        class_names: the classes, in index order.
    """
    spec = check_class_weight("class_weight", spec)
    if spec is None:
        return None
    k = len(class_names)
    if spec == BALANCED:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k)
        # n / (k * n_c); a class absent from the labels weighs nothing.
        with np.errstate(divide="ignore"):
            weights = np.where(counts > 0, counts.sum() / (k * counts), 0.0)
        return weights.astype(np.float32)
    given = read_weight_file(spec) if isinstance(spec, str) else spec
    unknown = sorted(set(given) - {str(c) for c in class_names})
    if unknown:
        raise TransferkitError(
            f"class_weight names {unknown}, which are not among the classes {list(class_names)}.")
    missing = [str(c) for c in class_names if str(c) not in given]
    if missing:
        raise TransferkitError(
            f"class_weight gives no weight for {missing}; give one for every class "
            f"{list(class_names)}.")
    return np.array([given[str(c)] for c in class_names], dtype=np.float32)


def sample_weights(weights, labels):
    """Each example's weight: its class's. `None` when `weights` is `None`."""
    if weights is None:
        return None
    return np.asarray(weights, np.float32)[np.asarray(labels, dtype=np.int64)]


def imbalance_metrics(labels, scores):
    """Validation figures for skewed classes, from the class scores of each example.

    `macro_f1` (the mean of the per-class F1), `balanced_accuracy` (the mean
    recall) and, for two classes, `roc_auc`, `pr_auc` (average precision,
    class 1 positive) and `threshold`: the class-1 score (its probability,
    or a linear SVM's decision score) from which calling an example class 1
    gives these examples the highest balanced accuracy, that accuracy being
    `balanced_accuracy_at_threshold`.

    Example:

    >>> imbalance_metrics([0, 0, 1], [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])["macro_f1"]
    1.0
    """
    from sklearn.metrics import (
        average_precision_score,
        balanced_accuracy_score,
        f1_score,
        roc_auc_score,
        roc_curve,
    )

    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores.argmax(axis=1)
    k = scores.shape[1]
    figures = {
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=range(k),
                                   zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
    }
    if k == 2 and len(np.unique(labels)) == 2:
        positive = scores[:, 1]  # p(class 1), or a linear SVM's decision score
        figures["roc_auc"] = float(roc_auc_score(labels, positive))
        figures["pr_auc"] = float(average_precision_score(labels, positive))
        false, true, thresholds = roc_curve(labels, positive)
        best = int(np.argmax(true - false))  # Youden's J = 2 * balanced accuracy - 1
        figures["threshold"] = float(thresholds[best]) if math.isfinite(thresholds[best]) \
            else None
        figures["balanced_accuracy_at_threshold"] = float((true[best] + 1 - false[best]) / 2)
    return figures


def _check_weight(value, what):
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = math.nan
    if isinstance(value, bool) or not math.isfinite(weight) or weight < 0:
        raise TransferkitError(f"{what} must be a number >= 0, got {value!r}.")
    return weight
