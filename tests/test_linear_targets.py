"""Linear heads for multi-label and numeric targets: one logistic regression per label, ridge."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from transferkit.data.splits import iterative_folds
from transferkit.errors import TransferkitError
from transferkit.training.linear import DEFAULT_ALPHAS, LinearHead

CS = (1e-3, 1e-1, 10.0)


def tagged(n=60, d=6, k=3, seed=0):
    """Features on very different scales and `k` labels, each a noisy linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x[:, :k] + 0.7 * rng.normal(size=(n, k)) > 0.3).astype(int)
    return (x * rng.uniform(0.05, 20, d) + rng.normal(size=d) * 5).astype("float32"), y


def numeric(n=50, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 10 + 0.3 * rng.normal(size=n)
    return (x * rng.uniform(0.05, 20, d)).astype("float32"), y


def test_multilabel_layer_is_a_sigmoid_per_label_equal_to_each_logistic_regression():
    x, y = tagged()
    head = LinearHead("logreg", Cs=CS, seed=0).fit(x, y)
    assert head.task_ == "multilabel" and head.folds_ == 5
    layer = head.to_layer()
    assert layer.get_config()["activation"] == "sigmoid"
    out = keras.Sequential([keras.Input((x.shape[1],)), layer]).predict(x, verbose=0)
    reference = np.stack([e.predict_proba(head.estimator_[0].transform(x))[:, 1]
                          for e in head.estimator_[-1].estimators_], axis=1)
    assert out.shape == (len(x), 3)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    np.testing.assert_allclose(head.predict_scores(x), reference, atol=1e-12)


def test_multilabel_C_is_the_best_mean_label_log_loss_of_an_independent_search():
    x, y = tagged(seed=2)
    head = LinearHead("logreg", Cs=CS, folds=4, seed=3).fit(x, y)
    folds = iterative_folds(np.concatenate([y, 1 - y], axis=1), 4, seed=3)
    losses = []
    for c in CS:
        per_fold = []
        for train, val in folds:
            fold_losses = []
            for j in range(y.shape[1]):
                model = make_pipeline(StandardScaler(), LogisticRegression(
                    C=c, max_iter=1000, random_state=3)).fit(x[train], y[train, j])
                fold_losses.append(log_loss(y[val, j], model.predict_proba(x[val])[:, 1],
                                            labels=[0, 1]))
            per_fold.append(np.mean(fold_losses))
        losses.append(np.mean(per_fold))
    assert head.C_ == CS[int(np.argmin(losses))]
    assert [r["log_loss"] for r in head.cv_results_] == pytest.approx(losses)
    assert head.alpha_ is None and head.cv_rmse_ is None and 0.5 < head.cv_accuracy_ <= 1


def test_ridge_layer_equals_predict_and_alpha_is_the_best_of_kfold():
    x, y = numeric()
    head = LinearHead("ridge", seed=1).fit(x, y)
    assert head.task_ == "regression" and head.folds_ == 5
    assert head.C_ is None and head.cv_accuracy_ is None and head.classes_ is None
    folds = KFold(5, shuffle=True, random_state=1)
    mse = [-cross_validate(make_pipeline(StandardScaler(), Ridge(alpha=a)), x, y, cv=folds,
                           scoring="neg_mean_squared_error")["test_score"].mean()
           for a in DEFAULT_ALPHAS]
    best = int(np.argmin(mse))
    assert head.alpha_ == DEFAULT_ALPHAS[best]
    assert head.cv_rmse_ == pytest.approx(np.sqrt(mse[best]))
    assert [r["rmse"] for r in head.cv_results_] == pytest.approx(np.sqrt(mse))
    assert [r["chosen"] for r in head.cv_results_].index(True) == best
    layer = head.to_layer()
    assert layer.get_config()["activation"] == "linear"
    out = keras.Sequential([keras.Input((x.shape[1],)), layer]).predict(x, verbose=0)
    assert out.shape == (len(x), 1)
    np.testing.assert_allclose(out[:, 0], head.predict_scores(x), rtol=1e-4)


def test_single_label_head_is_unchanged():
    x, y = tagged(k=1)
    head = LinearHead("logreg", Cs=CS, seed=0).fit(x, y)  # an (n, 1) column is single-label
    assert head.task_ == "single" and head.alpha_ is None
    assert head.to_layer().get_config()["activation"] == "softmax"
    assert head.dense_weights()[0].shape == (x.shape[1], 2)


@pytest.mark.parametrize("kwargs, y, words", [
    ({"kind": "linear-svm"}, "tags", "use logreg: per-label thresholds need probabilities"),
    ({"class_weight": "balanced"}, "tags", "class_weight is not supported with multi-label"),
    ({}, "rare tag", "label 1 has 1 positive"),
    ({}, "bad tags", "0s and 1s"),
    ({"kind": "ridge", "alphas": [0.1, -1]}, "numbers", "alphas must be"),
    ({"kind": "ridge", "class_weight": "balanced"}, "numbers", "leave it out with ridge"),
    ({"kind": "ridge"}, "nan", "one finite number per sample"),
])
def test_bad_targets_are_one_clear_error(kwargs, y, words):
    x, tags = tagged(n=20)
    targets = {"tags": tags, "numbers": np.arange(20.0), "nan": np.r_[np.nan, np.arange(19.0)]}
    if y == "rare tag":
        targets[y] = tags.copy()
        targets[y][:, 1] = 0
        targets[y][5, 1] = 1
    if y == "bad tags":
        targets[y] = tags * 2
    with pytest.raises(TransferkitError, match=words) as caught:
        LinearHead(**kwargs).fit(x, targets[y])
    assert "\n" not in str(caught.value)
