"""Scoring multi-label and regression predictions: thresholds, metrics, predicted labels.

A multi-label model gives each label its own probability (a sigmoid per
label); a label is predicted when its score is at least its threshold.
`tune_thresholds` picks one threshold per label, `multilabel_metrics` and
`regression_metrics` turn predictions into plain-Python dicts ready for
`json.dump`, and `labels_above` lists what a model predicts for each example.

Example:

>>> import numpy as np
>>> targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
>>> scores = np.array([[0.9, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.3]])
>>> multilabel_metrics(targets, scores)["subset_accuracy"]
0.75
>>> labels_above(scores[:1], [0.5, 0.5], ["cat", "dog"])
[[('cat', 0.9)]]
"""

import numpy as np

from transferkit.errors import TransferkitError

DEFAULT_THRESHOLD = 0.5


def tune_thresholds(targets, scores):
    """Per label, the score threshold maximizing that label's F1 on the given data.

    A label is predicted when `score >= threshold`. The candidates are the
    midpoints between consecutive distinct scores of the label, and its
    lowest score (every example predicted positive). Of the candidates
    with the best F1, the one closest to 0.5 wins (then the lower one). A
    label with no positives, only positives, or a single distinct score
    keeps 0.5.

    Thresholds tuned on the validation set make that set's F1 optimistic:
    they were chosen to fit it. Report F1 on data the thresholds did not see
    (a test set, or the other folds of a cross-validation) when it matters.

    Args:
        targets: an `(examples, labels)` array of 0s and 1s.
        scores: the model's scores (probabilities), the same shape.

    Returns:
        A float array of shape `(labels,)`.

    Example:

    >>> tune_thresholds(np.array([[1], [1], [0], [0]]), np.array([[0.3], [0.2], [0.1], [0.0]]))
    array([0.15])
    """
    targets, scores = _checked_pair(targets, scores)
    return np.array([_best_threshold(t, s) for t, s in zip(targets.T, scores.T)])


def _best_threshold(truth, score):
    positives = int(truth.sum())
    distinct = np.unique(score)
    if positives in (0, len(truth)) or len(distinct) < 2:
        return DEFAULT_THRESHOLD
    candidates = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2])
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    # Positives among the examples below each candidate: those are predicted negative.
    positives_below = np.concatenate([[0], np.cumsum(truth[order])])
    below = np.searchsorted(sorted_score, candidates, side="left")
    true_positives = positives - positives_below[below]
    predicted = len(truth) - below
    f1 = 2 * true_positives / (predicted + positives)
    best = np.flatnonzero(f1 == f1.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - DEFAULT_THRESHOLD))]])


def multilabel_metrics(targets, scores, thresholds=None, label_names=None):
    """Multi-label scores of predictions (`score >= threshold`), as plain Python numbers.

    Keys:
        `micro_f1`: F1 of all (example, label) decisions pooled.
        `macro_f1`: the mean of the per-label F1s, over every label.
        `mean_average_precision`: the mean of scikit-learn's
            `average_precision_score` (threshold-free) over the labels with
            at least one positive; `None` when no label has one.
        `subset_accuracy`: the share of examples with every label right.
        `hamming_accuracy`: the share of (example, label) decisions right
            (the mean per-label accuracy).
        `per_label`: `{name: {"f1", "precision", "recall",
            "average_precision", "threshold", "support"}}`; `support` is the
            number of positives, `average_precision` is `None` without one.

    Undefined ratios count as 0: precision with nothing predicted, recall
    and F1 of a label with no positives (so such a label lowers `macro_f1`).

    Args:
        targets: an `(examples, labels)` array of 0s and 1s.
        scores: the model's scores (probabilities), the same shape.
        thresholds: one threshold per label (or one for all). Defaults to
            0.5 each.
        label_names: the labels' names, the keys of `per_label`. Defaults to
            `"0"`, `"1"`, ...

    Example:

    >>> m = multilabel_metrics(np.array([[1, 0], [0, 1]]), np.array([[0.8, 0.6], [0.4, 0.9]]))
    >>> m["micro_f1"], m["per_label"]["1"]["precision"]
    (0.8, 0.5)
    """
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_recall_fscore_support,
    )

    targets, scores = _checked_pair(targets, scores)
    k = targets.shape[1]
    thresholds = _checked_thresholds(thresholds, k)
    names = _checked_names(label_names, k)
    predicted = (scores >= thresholds).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, average=None, labels=np.arange(k), zero_division=0
    )
    average_precision = [
        float(average_precision_score(targets[:, j], scores[:, j])) if support[j] else None
        for j in range(k)
    ]
    defined = [ap for ap in average_precision if ap is not None]
    return {
        "micro_f1": float(f1_score(targets, predicted, average="micro", zero_division=0)),
        "macro_f1": float(np.mean(f1)),
        "mean_average_precision": float(np.mean(defined)) if defined else None,
        "subset_accuracy": float(np.mean(np.all(predicted == targets, axis=1))),
        "hamming_accuracy": float(np.mean(predicted == targets)),
        "per_label": {
            name: {"f1": float(f1[j]), "precision": float(precision[j]),
                   "recall": float(recall[j]), "average_precision": average_precision[j],
                   "threshold": float(thresholds[j]), "support": int(support[j])}
            for j, name in enumerate(names)
        },
    }


def regression_metrics(targets, predictions):
    """`{"mae", "rmse", "r2"}` of numeric predictions, as plain Python floats.

    `r2` (scikit-learn's `r2_score`: 1 is perfect, 0 is predicting the mean)
    is `None` when the targets are constant: it divides by their variance.

    Args:
        targets: the true values, shape `(examples,)` or `(examples, 1)`.
        predictions: the predicted values, the same length.

    Example:

    >>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    {'mae': 0.6666666666666666, 'rmse': 1.1547005383792515, 'r2': -1.0}
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    targets, predictions = _column(targets, "targets"), _column(predictions, "predictions")
    if len(targets) != len(predictions) or not len(targets):
        raise TransferkitError(
            f"Got {len(targets)} targets and {len(predictions)} predictions: give one "
            "prediction per target, at least one."
        )
    constant = bool(np.all(targets == targets[0]))
    return {
        "mae": float(mean_absolute_error(targets, predictions)),
        "rmse": float(np.sqrt(mean_squared_error(targets, predictions))),
        "r2": None if constant else float(r2_score(targets, predictions)),
    }


def labels_above(scores, thresholds, label_names):
    """For each example, `[(name, score)]` of the labels at or above threshold, highest first.

    Args:
        scores: an `(examples, labels)` array of scores.
        thresholds: one threshold per label (or one for all).
        label_names: the labels' names.

    Example:

    >>> labels_above(np.array([[0.2, 0.7, 0.9], [0.1, 0.1, 0.1]]), 0.5, ["a", "b", "c"])
    [[('c', 0.9), ('b', 0.7)], []]
    """
    scores = _checked_scores(scores)
    k = scores.shape[1]
    thresholds = _checked_thresholds(thresholds, k)
    names = _checked_names(label_names, k)
    found = []
    for row in scores:
        above = np.flatnonzero(row >= thresholds)
        above = above[np.argsort(-row[above], kind="stable")]
        found.append([(names[j], float(row[j])) for j in above])
    return found


def _checked_scores(scores):
    scores = np.asarray(scores)
    if scores.ndim != 2 or not np.issubdtype(scores.dtype, np.number) \
            or not np.isfinite(scores).all():
        raise TransferkitError(
            f"Invalid scores of shape {scores.shape}: use an (examples, labels) array of "
            "finite numbers."
        )
    return scores.astype(np.float64)


def _checked_pair(targets, scores):
    scores = _checked_scores(scores)
    targets = np.asarray(targets)
    if targets.shape != scores.shape or not np.isin(targets, (0, 1)).all():
        raise TransferkitError(
            f"Invalid targets of shape {targets.shape} for scores of shape {scores.shape}: "
            "use 0s and 1s, one per score."
        )
    return targets.astype(np.int64), scores


def _checked_thresholds(thresholds, k):
    if thresholds is None:
        return np.full(k, DEFAULT_THRESHOLD)
    try:
        values = np.broadcast_to(np.asarray(thresholds, np.float64), (k,))
    except (TypeError, ValueError):
        values = None
    if values is None or not np.isfinite(values).all():
        raise TransferkitError(
            f"Invalid thresholds {thresholds!r}: use one number per label ({k}), or one for all."
        )
    return values


def _checked_names(label_names, k):
    if label_names is None:
        return [str(j) for j in range(k)]
    names = [str(name) for name in label_names]
    if len(names) != k or len(set(names)) != k:
        raise TransferkitError(
            f"Invalid label_names {list(label_names)!r}: give {k} distinct names, one per label."
        )
    return names


def _column(values, what):
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number) \
            or not np.isfinite(values).all():
        raise TransferkitError(
            f"Invalid {what} of shape {values.shape}: use a 1-D array of finite numbers."
        )
    return values.astype(np.float64)
