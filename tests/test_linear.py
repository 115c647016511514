"""Linear classifiers on frozen features: C chosen by cross-validation, exported as Dense."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from transferkit.errors import TransferkitError
from transferkit.training.linear import DEFAULT_CS, LinearHead


def blobs(classes=2, n=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(scale=1.5, size=(classes, d))
    x = centres[y] + rng.normal(size=(n, d))
    # Features on very different scales, as pooled CNN features are.
    return (x * rng.uniform(0.05, 20, d) + rng.normal(size=d) * 5).astype("float32"), y


@pytest.mark.parametrize("kind", ["logreg", "linear-svm"])
@pytest.mark.parametrize("classes", [2, 3])
def test_dense_layer_equals_the_scikit_learn_pipeline(kind, classes):
    x, y = blobs(classes)
    head = LinearHead(kind, seed=0).fit(x, y)
    model = keras.Sequential([keras.Input((x.shape[1],)), head.to_layer()])
    out = model.predict(x, verbose=0)
    reference = head.predict_scores(x)
    if classes == 2:  # one score z -> two outputs
        if kind == "logreg":
            assert out.shape == reference.shape
        else:
            reference = np.stack([-reference, reference], axis=1)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=2e-5)
    np.testing.assert_array_equal(out.argmax(axis=1), head.estimator_.predict(x))


@pytest.mark.parametrize("kind", ["logreg", "linear-svm"])
def test_C_is_the_best_of_an_independent_cross_validation(kind):
    x, y = blobs(3, n=75, seed=3)
    head = LinearHead(kind, seed=7).fit(x, y)
    folds = StratifiedKFold(5, shuffle=True, random_state=7)
    scores = []
    for c in DEFAULT_CS:
        classifier = (LogisticRegression(C=c, max_iter=1000, random_state=7) if kind == "logreg"
                      else LinearSVC(C=c, max_iter=1000, random_state=7))
        result = cross_validate(make_pipeline(StandardScaler(), classifier), x, y, cv=folds,
                                scoring="neg_log_loss" if kind == "logreg" else "accuracy")
        scores.append(result["test_score"].mean())
    best = int(np.argmax(scores))  # the first (smallest C) of any tie
    assert head.C_ == pytest.approx(DEFAULT_CS[best])
    assert [r["chosen"] for r in head.cv_results_].index(True) == best
    assert head.folds_ == 5 and 0.5 < head.cv_accuracy_ <= 1


def test_folds_shrink_to_the_smallest_class_and_saving_round_trips(tmp_path):
    x, y = blobs(2, n=40)
    y[:37] = 0
    y[37:] = 1  # 3 samples of class 1
    head = LinearHead("logreg", seed=0).fit(x, y)
    assert head.folds_ == 3
    inputs = keras.Input((x.shape[1],), name="features")
    extractor = keras.Model(inputs, keras.layers.Identity()(inputs), name="features")
    model = head.attach(extractor)
    path = tmp_path / "linear.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), head.predict_scores(x), rtol=1e-4,
                               atol=2e-5)


@pytest.mark.parametrize("kwargs, y, words", [
    ({"kind": "svm"}, None, "Unknown linear head"),
    ({"Cs": []}, None, "Cs must be"),
    ({"Cs": [1.0, -1.0]}, None, "Cs must be"),
    ({"folds": 1}, None, "folds must be"),
    ({}, "one-of-a-class", "at least 2 samples of every class"),
    ({}, "single", "at least two classes"),
])
def test_bad_input_is_one_clear_error(kwargs, y, words):
    x, labels = blobs(2, n=20)
    if y == "one-of-a-class":
        labels = np.array([0] * 19 + [1])
    elif y == "single":
        labels = np.zeros(20, int)
    with pytest.raises(TransferkitError, match=words):
        LinearHead(**kwargs).fit(x, labels)
    with pytest.raises(TransferkitError, match="not fitted"):
        LinearHead().dense_weights()
