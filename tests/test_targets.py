"""Multi-label and regression scores: every figure checked against a plain numpy computation."""

import json

import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.training.targets import (
    labels_above,
    multilabel_metrics,
    regression_metrics,
    tune_thresholds,
)

# Six examples, three labels; the last label has no positives. Scores are distinct per label.
TARGETS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
SCORES = np.array([
    [0.9, 0.2, 0.1],
    [0.4, 0.8, 0.7],
    [0.6, 0.3, 0.2],
    [0.2, 0.6, 0.3],
    [0.7, 0.1, 0.4],
    [0.1, 0.9, 0.05],
])
THRESHOLDS = np.array([0.5, 0.25, 0.5])


def f1_by_hand(truth, predicted):
    tp = np.sum(truth & predicted)
    fp = np.sum(~truth & predicted)
    fn = np.sum(truth & ~predicted)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def average_precision_by_hand(truth, score):
    """Mean over the positives of the precision among the examples scored at least as high."""
    ranked = truth[np.argsort(-score)]
    hits = np.cumsum(ranked)
    return np.mean([hits[i] / (i + 1) for i in np.flatnonzero(ranked)])


def test_multilabel_metrics_equal_a_numpy_computation():
    metrics = multilabel_metrics(TARGETS, SCORES, THRESHOLDS, ["cat", "dog", "eel"])
    truth, predicted = TARGETS.astype(bool), SCORES >= THRESHOLDS
    # label 0 at 0.5: predicts examples 0, 2, 4 -> tp 2, fp 1, fn 1
    # label 1 at 0.25: predicts 1, 2, 3, 5 -> tp 3, fp 1, fn 0
    # label 2 at 0.5: predicts 1 -> tp 0, fp 1, no positives
    per_label_f1 = [f1_by_hand(truth[:, j], predicted[:, j]) for j in range(3)]
    assert per_label_f1 == pytest.approx([2 / 3, 6 / 7, 0.0])
    tp, fp, fn = 5, 3, 1
    assert metrics["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics["macro_f1"] == pytest.approx(np.mean(per_label_f1))
    assert metrics["subset_accuracy"] == pytest.approx(np.mean([0, 0, 1, 0, 1, 1]))
    assert metrics["hamming_accuracy"] == pytest.approx(1 - (fp + fn) / TARGETS.size)
    ap = [average_precision_by_hand(truth[:, j], SCORES[:, j]) for j in range(2)]
    assert ap == pytest.approx([(1 / 1 + 2 / 2 + 3 / 4) / 3] * 2)  # each: one miss ranked third
    assert metrics["mean_average_precision"] == pytest.approx(np.mean(ap))
    assert metrics["per_label"] == {
        "cat": {"f1": pytest.approx(2 / 3), "precision": pytest.approx(2 / 3),
                "recall": pytest.approx(2 / 3), "average_precision": pytest.approx(ap[0]),
                "threshold": 0.5, "support": 3},
        "dog": {"f1": pytest.approx(6 / 7), "precision": pytest.approx(3 / 4),
                "recall": 1.0, "average_precision": pytest.approx(ap[1]),
                "threshold": 0.25, "support": 3},
        "eel": {"f1": 0.0, "precision": 0.0, "recall": 0.0, "average_precision": None,
                "threshold": 0.5, "support": 0},
    }
    json.dumps(metrics)  # plain Python numbers only
    assert all(type(v) is float for k, v in metrics.items() if k != "per_label")
    assert type(metrics["per_label"]["cat"]["support"]) is int


def test_thresholds_default_to_a_half_and_names_to_indices():
    metrics = multilabel_metrics(TARGETS, SCORES)
    assert list(metrics["per_label"]) == ["0", "1", "2"]
    assert {m["threshold"] for m in metrics["per_label"].values()} == {0.5}
    assert metrics["per_label"]["1"]["recall"] == pytest.approx(2 / 3)  # 0.3 < 0.5 now missed


def f1_at(truth, score, threshold):
    return f1_by_hand(truth.astype(bool), score >= threshold)


@pytest.mark.parametrize("seed", range(4))
def test_tuned_thresholds_maximize_each_labels_f1(seed):
    rng = np.random.default_rng(seed)
    targets = (rng.random((40, 4)) < [0.1, 0.3, 0.5, 0.8]).astype(int)
    targets[:2, 0] = 1
    scores = np.clip(targets * 0.3 + rng.random((40, 4)) * 0.7, 0, 1).round(2)  # with ties
    thresholds = tune_thresholds(targets, scores)
    assert thresholds.shape == (4,) and thresholds.dtype == np.float64
    grid = np.concatenate([np.linspace(-0.05, 1.05, 2201), scores.ravel()])
    for j in range(4):
        best = max(f1_at(targets[:, j], scores[:, j], t) for t in grid)
        assert f1_at(targets[:, j], scores[:, j], thresholds[j]) == pytest.approx(best)


def test_tuned_threshold_ties_go_to_the_one_closest_to_a_half():
    # F1 2/3 both at 0.2 (everything positive) and at 0.75 (only the top one).
    targets = np.array([[1], [0], [0], [1]])
    scores = np.array([[0.9], [0.6], [0.4], [0.2]])
    np.testing.assert_allclose(tune_thresholds(targets, scores), [0.75])
    # A label best predicted everywhere gets its lowest score, not a midpoint above it.
    np.testing.assert_allclose(tune_thresholds([[1], [1], [0]], [[0.1], [0.3], [0.9]]), [0.1])


def test_labels_without_positives_or_negatives_keep_a_half():
    targets = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 1]])
    scores = np.array([[0.2, 0.3, 0.4], [0.9, 0.1, 0.4], [0.4, 0.8, 0.4]])
    np.testing.assert_array_equal(tune_thresholds(targets, scores), [0.5, 0.5, 0.5])


def test_regression_metrics_equal_a_numpy_computation():
    targets = np.array([3.0, -0.5, 2.0, 7.0])
    predictions = np.array([[2.5], [0.0], [2.0], [8.0]])
    errors = predictions[:, 0] - targets
    metrics = regression_metrics(targets, predictions)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(errors ** 2)))
    assert metrics["r2"] == pytest.approx(
        1 - np.sum(errors ** 2) / np.sum((targets - targets.mean()) ** 2))
    assert all(type(v) is float for v in metrics.values())
    assert regression_metrics([2.0, 2.0], [1.0, 3.0]) == {"mae": 1.0, "rmse": 1.0, "r2": None}


def test_labels_above_lists_names_highest_first():
    scores = np.array([[0.6, 0.9, 0.55], [0.1, 0.2, 0.3], [0.7, 0.7, 0.2]])
    found = labels_above(scores, [0.5, 0.95, 0.2], ["a", "b", "c"])
    assert found == [[("a", 0.6), ("c", 0.55)], [("c", 0.3)], [("a", 0.7), ("c", 0.2)]]
    assert type(found[0][0][1]) is float


@pytest.mark.parametrize("call, words", [
    (lambda: tune_thresholds(TARGETS, SCORES[:, :2]), "Invalid targets of shape"),
    (lambda: tune_thresholds(TARGETS * 2, SCORES), "0s and 1s"),
    (lambda: tune_thresholds(TARGETS, SCORES[:, 0]), "Invalid scores"),
    (lambda: multilabel_metrics(TARGETS, SCORES * np.nan), "finite numbers"),
    (lambda: multilabel_metrics(TARGETS, SCORES, [0.5, 0.5]), "one number per label"),
    (lambda: multilabel_metrics(TARGETS, SCORES, label_names=["a", "a", "b"]), "3 distinct"),
    (lambda: regression_metrics([1.0, 2.0], [1.0]), "one prediction per target"),
    (lambda: regression_metrics([[1.0, 2.0]], [1.0]), "Invalid targets"),
    (lambda: labels_above(SCORES, 0.5, ["a", "b"]), "3 distinct"),
])
def test_bad_input_is_one_clear_error(call, words):
    with pytest.raises(TransferkitError, match=words) as caught:
        call()
    assert "\n" not in str(caught.value)
