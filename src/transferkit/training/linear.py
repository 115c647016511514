"""Linear classifiers and ridge regression on frozen features (seed 001's bottleneck recipe).

With under ~1,000 labelled samples, a linear classifier on the pooled
features of a frozen pretrained backbone is often as accurate as a trained
head, and takes seconds. `LinearHead` fits scikit-learn's `LinearSVC` or
`LogisticRegression` on standardized features, choosing the regularization
strength `C` by stratified cross-validation, and turns the result into one
Keras `Dense` layer (the standardization folded into its weights), so the
classifier saves inside the `.keras` model and predicts on every backend,
with no pickle. The same holds for multi-label targets (one logistic
regression per label, a sigmoid layer) and numeric targets (`"ridge"`).

Example:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> features = rng.normal(size=(60, 8)).astype("float32")
>>> labels = (features[:, 0] > 0).astype(int)
>>> head = LinearHead("logreg", seed=0).fit(features, labels)
>>> head.cv_accuracy_ > 0.8
True
>>> head.to_layer().compute_output_shape((None, 8))
(None, 2)
"""

import numbers
import warnings

import keras
import numpy as np

from transferkit.errors import TransferkitError

KINDS = ("logreg", "linear-svm", "ridge")
DEFAULT_CS = tuple(float(c) for c in np.logspace(-5, 1, 7))
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 8))


class LinearHead:
    """A linear classifier or regressor, cross-validated, exportable as a Keras layer.

    Features are standardized (scikit-learn's `StandardScaler`), then
    classified by `LogisticRegression` (`"logreg"`: class probabilities,
    multinomial for more than two classes) or `LinearSVC`
    (`"linear-svm"`: one-vs-rest decision scores, no probabilities). `C` is
    chosen from `Cs` by `GridSearchCV` over stratified, shuffled, seeded
    folds: by log loss for `"logreg"` (accuracy ties are common on small
    data and would pick an overconfident or washed-out model at random), by
    accuracy for `"linear-svm"`. Ties go to the smaller `C` (more
    regularization). The chosen model is refit on all the data.

    The task follows from `y` and `kind`:

    - single-label (`"single"`): `y` holds one class per sample, as above.
    - multi-label (`"multilabel"`, `"logreg"` only): `y` is an
      `(samples, labels)` array of 0s and 1s with at least 2 columns. One
      logistic regression per label (scikit-learn's `OneVsRestClassifier`),
      sharing one `C`, chosen by the mean per-label log loss over folds from
      `transferkit.data.splits.iterative_folds`, stratified on each label's
      positives and negatives alike (so every training fold has both).
      `to_layer()` gives a sigmoid per label.
    - regression (`"regression"`, `kind="ridge"`): `y` is numeric. Standardized
      features, scikit-learn's `Ridge`, `alpha` chosen from `alphas` by mean
      squared error over shuffled, seeded `KFold` folds. `to_layer()` gives one
      linear output.

    Args:
        kind: `"logreg"` (default), `"linear-svm"` or `"ridge"`.
        Cs: the inverse regularization strengths to try (classifiers).
            Defaults to `1e-5, 1e-4, ..., 10`.
        folds: cross-validation folds, at most the smallest class's count
            (per label, the smaller of its positives and negatives; for ridge,
            the number of samples). Defaults to 5.
        seed: seeds the folds (and the solvers). Defaults to 0.
        max_iter: the solver's iteration limit. Defaults to 1000.
        class_weight: optional `{class: weight}` or `"balanced"`, as in
            scikit-learn: each class's examples weigh that much in the fit.
            Single-label only.
        alphas: the ridge penalties to try (`"ridge"`). Defaults to
            `1e-3, 1e-2, ..., 1e4`.

    Attributes (after `fit`):
        task_: `"single"`, `"multilabel"` or `"regression"`.
        estimator_: the fitted scikit-learn pipeline (scaler, model).
        C_: the chosen `C`; `None` for ridge.
        alpha_: the chosen ridge `alpha`; `None` for classifiers.
        classes_: the class labels seen, sorted (the label indices
            `0 .. k-1` for multi-label); `None` for ridge.
        cv_accuracy_: mean cross-validated accuracy at `C_` (multi-label:
            the mean per-label accuracy at 0.5); `None` for ridge.
        cv_rmse_: for ridge, the root of the mean cross-validated squared
            error at `alpha_`; `None` for classifiers.
        cv_results_: one dict per `C`: `C`, `accuracy`, `accuracy_std`,
            `log_loss` (logreg only; multi-label: the mean per-label log
            loss), `chosen`; for ridge one per `alpha`: `alpha`, `rmse`,
            `chosen`.
        folds_: the number of folds used.

    Example:

    >>> head = LinearHead("linear-svm", seed=0).fit(train_features, y)  # doctest: +SKIP
    >>> model = head.attach(feature_extractor(model))  # doctest: +SKIP
    >>> features = np.random.default_rng(0).normal(size=(40, 3))
    >>> tags = np.stack([features[:, 0] > 0, features[:, 1] > 0], axis=1).astype(int)
    >>> LinearHead("logreg").fit(features, tags).to_layer().activation.__name__
    'sigmoid'
    >>> ridge = LinearHead("ridge").fit(features, 2 * features[:, 0] + 1)
    >>> ridge.task_, ridge.cv_rmse_ < 0.1
    ('regression', True)
    """

    def __init__(self, kind="logreg", *, Cs=DEFAULT_CS, folds=5, seed=0, max_iter=1000,
                 class_weight=None, alphas=DEFAULT_ALPHAS):
        self.kind = kind
        self.class_weight = class_weight
        self.alphas = alphas
        self.Cs = Cs
        self.folds = folds
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, features, y):
        """Chooses `C` (or `alpha`) by cross-validation and fits on all of `features`.

        Returns `self`.
        """
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        features, y, task = self._checked(features, y)
        if task == "multilabel":
            return self._fit_multilabel(features, y)
        if task == "regression":
            return self._fit_ridge(features, y)
        counts = np.unique(y, return_counts=True)[1]
        folds = min(int(self.folds), int(counts.min()))
        if folds < 2:
            raise TransferkitError(
                f"Choosing C by cross-validation needs at least 2 samples of every class; "
                f"the smallest class has {counts.min()}. Add images to it."
            )
        if self.kind == "logreg":
            from sklearn.linear_model import LogisticRegression

            classifier = LogisticRegression(max_iter=self.max_iter, random_state=self.seed,
                                            class_weight=self.class_weight)
            scoring, refit = {"accuracy": "accuracy", "log_loss": "neg_log_loss"}, "log_loss"
        else:
            from sklearn.svm import LinearSVC

            classifier = LinearSVC(max_iter=self.max_iter, random_state=self.seed,
                                   class_weight=self.class_weight)
            scoring, refit = {"accuracy": "accuracy"}, "accuracy"
        search = GridSearchCV(
            Pipeline([("scale", StandardScaler()), ("classify", classifier)]),
            {"classify__C": [float(c) for c in self.Cs]}, scoring=scoring, refit=refit,
            cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            search.fit(features, y)
        self._keep_search(search, "single", "classify__C", folds)
        self._warn_unconverged(caught, len(self.Cs) * folds + 1)
        return self

    def _fit_multilabel(self, features, y):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        from transferkit.data.splits import iterative_folds

        # Positives and negatives as labels of their own: each fold gets its share of both.
        both = np.concatenate([y, 1 - y], axis=1)
        folds = min(int(self.folds), int(both.sum(axis=0).min()))
        splits = iterative_folds(both, folds, seed=self.seed, noun="sample")
        classifier = OneVsRestClassifier(
            LogisticRegression(max_iter=self.max_iter, random_state=self.seed))
        search = GridSearchCV(
            Pipeline([("scale", StandardScaler()), ("classify", classifier)]),
            {"classify__estimator__C": [float(c) for c in self.Cs]},
            scoring={"accuracy": _mean_label_accuracy, "log_loss": _neg_mean_label_log_loss},
            refit="log_loss", cv=splits,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            search.fit(features, y)
        self._keep_search(search, "multilabel", "classify__estimator__C", folds)
        self._warn_unconverged(caught, (len(self.Cs) * folds + 1) * y.shape[1])
        return self

    def _fit_ridge(self, features, y):
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        folds = min(int(self.folds), len(y))
        search = GridSearchCV(
            Pipeline([("scale", StandardScaler()), ("regress", Ridge())]),
            {"regress__alpha": [float(a) for a in self.alphas]},
            scoring="neg_mean_squared_error",
            cv=KFold(folds, shuffle=True, random_state=self.seed),
        )
        from scipy.linalg import LinAlgWarning

        with warnings.catch_warnings():
            # More features than images make X'X + alpha I ill-conditioned for
            # small alphas; the solve is still exact to the data's precision,
            # and cross-validation judges the alpha.
            warnings.simplefilter("ignore", LinAlgWarning)
            search.fit(features, y)
        results = search.cv_results_
        best = int(search.best_index_)
        rmse = np.sqrt(-results["mean_test_score"])
        self.task_ = "regression"
        self.estimator_ = search.best_estimator_
        self.alpha_ = float(results["param_regress__alpha"][best])
        self.C_ = self.cv_accuracy_ = self.classes_ = None
        self.folds_ = folds
        self.cv_rmse_ = float(rmse[best])
        self.cv_results_ = [
            {"alpha": float(a), "rmse": float(rmse[i]), "chosen": i == best}
            for i, a in enumerate(results["param_regress__alpha"])
        ]
        return self

    def _keep_search(self, search, task, parameter, folds):
        """The fitted attributes of a classifier's `GridSearchCV` over `C` (`parameter`)."""
        results = search.cv_results_
        best = int(search.best_index_)
        self.task_ = task
        self.estimator_ = search.best_estimator_
        self.C_ = float(results[f"param_{parameter}"][best])
        self.alpha_ = self.cv_rmse_ = None
        self.classes_ = self.estimator_.classes_
        self.folds_ = folds
        self.cv_accuracy_ = float(results["mean_test_accuracy"][best])
        self.cv_results_ = [
            {"C": float(c), "accuracy": float(results["mean_test_accuracy"][i]),
             "accuracy_std": float(results["std_test_accuracy"][i]),
             "log_loss": (-float(results["mean_test_log_loss"][i])
                          if "mean_test_log_loss" in results else None),
             "chosen": i == best}
            for i, c in enumerate(results[f"param_{parameter}"])
        ]

    def _warn_unconverged(self, caught, fits):
        from sklearn.exceptions import ConvergenceWarning

        unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        if unconverged:
            warnings.warn(
                f"{self.kind}: the solver did not converge in {unconverged} of "
                f"{fits} fits (max_iter={self.max_iter}); the large C values "
                "are the usual cause. Raise max_iter if the chosen C is among them.",
                stacklevel=3,
            )

    def dense_weights(self):
        """`(kernel, bias)` of a Dense layer equal to scaler + classifier.

        The kernel has shape `(features, outputs)`: one output per class, per
        label (multi-label: the logit of each label's logistic regression) or
        one (ridge). For two classes the single score `z` becomes
        `(-z/2, z/2)` for `"logreg"` (a softmax of which is scikit-learn's
        `predict_proba`) and `(-z, z)` for `"linear-svm"` (the predicted
        class's score is `|z|`, the decision function's size).
        """
        self._check_fitted()
        scaler, model = self.estimator_[0], self.estimator_[-1]
        if self.task_ == "multilabel":
            coef = np.concatenate([e.coef_ for e in model.estimators_]) / scaler.scale_
            intercept = np.concatenate([e.intercept_ for e in model.estimators_])
        else:
            coef = np.reshape(model.coef_, (-1, len(scaler.scale_))) / scaler.scale_
            intercept = np.reshape(model.intercept_, -1)
        intercept = intercept - coef @ scaler.mean_
        if self.task_ == "single" and len(self.classes_) == 2:
            half = 0.5 if self.kind == "logreg" else 1.0
            coef = np.concatenate([-half * coef, half * coef])
            intercept = np.concatenate([-half * intercept, half * intercept])
        return coef.T.astype("float32"), intercept.astype("float32")

    def to_layer(self, name="head"):
        """A built `keras.layers.Dense` computing the model's output.

        Softmax (probabilities) for `"logreg"`, sigmoid (one probability per
        label) for multi-label `"logreg"`, linear for `"linear-svm"`
        (decision scores) and `"ridge"` (the prediction, one column).
        """
        kernel, bias = self.dense_weights()
        activation = {"single": "softmax" if self.kind == "logreg" else None,
                      "multilabel": "sigmoid", "regression": None}[self.task_]
        layer = keras.layers.Dense(kernel.shape[1], activation=activation, name=name)
        layer.build((None, kernel.shape[0]))
        layer.set_weights([kernel, bias])
        return layer

    def attach(self, extractor, name=None):
        """`extractor` (inputs -> features) followed by this classifier, as one model."""
        outputs = self.to_layer()(extractor.outputs[0])
        return keras.Model(extractor.inputs[0], outputs, name=name or f"{extractor.name}_linear")

    def predict_scores(self, features):
        """scikit-learn's `predict_proba` (logreg), `decision_function` (linear-svm) or `predict` (ridge).

        For multi-label targets, `(samples, labels)` probabilities of each
        label being present.
        """
        self._check_fitted()
        if self.kind == "ridge":
            return self.estimator_.predict(features)
        if self.kind == "logreg":
            return self.estimator_.predict_proba(features)
        return self.estimator_.decision_function(features)

    def _checked(self, features, y):
        """`(features, y, task)`, or a one-line error naming what is wrong."""
        if self.kind not in KINDS:
            raise TransferkitError(
                f"Unknown linear head {self.kind!r}; use one of {', '.join(KINDS)}."
            )
        y = np.asarray(y)
        task = ("regression" if self.kind == "ridge"
                else "multilabel" if y.ndim == 2 and y.shape[1] > 1 else "single")
        grid, name = (self.alphas, "alphas") if task == "regression" else (self.Cs, "Cs")
        values = list(grid) if np.iterable(grid) else []
        if not values or not all(isinstance(v, numbers.Real) and np.isfinite(v) and v > 0
                                 for v in values):
            raise TransferkitError(f"{name} must be a non-empty list of positive numbers, got "
                                   f"{grid!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, numbers.Integral) \
                or self.folds < 2:
            raise TransferkitError(f"folds must be an int >= 2, got {self.folds!r}.")
        features = np.asarray(features)
        if task != "multilabel":
            y = y.reshape(-1)
        if features.ndim != 2 or len(features) != len(y):
            raise TransferkitError(
                f"Expected features of shape (samples, features) and one label per sample; "
                f"got {features.shape} and {y.shape}."
            )
        if task == "multilabel":
            return features, self._checked_multilabel(y), task
        if task == "regression":
            return features, self._checked_numeric(y), task
        if len(np.unique(y)) < 2:
            raise TransferkitError("A classifier needs at least two classes in y.")
        return features, y, task

    def _checked_multilabel(self, y):
        if self.kind != "logreg":
            raise TransferkitError(
                f"{self.kind} cannot fit multi-label targets; use logreg: per-label thresholds "
                "need probabilities."
            )
        if self.class_weight is not None:
            raise TransferkitError(
                "class_weight is not supported with multi-label targets; leave it out (or tune "
                "each label's threshold instead)."
            )
        if not np.isin(y, (0, 1)).all():
            raise TransferkitError(
                f"Multi-label targets must be 0s and 1s, one column per label; got values "
                f"{np.unique(y)[:5].tolist()}."
            )
        y = y.astype(np.int64)
        positives = y.sum(axis=0)
        fewest = np.minimum(positives, len(y) - positives)
        if fewest.min() < 2:
            label = int(np.argmin(fewest))
            raise TransferkitError(
                f"Choosing C by cross-validation needs at least 2 positive and 2 negative "
                f"samples of every label; label {label} has {positives[label]} positive(s) and "
                f"{len(y) - positives[label]} negative(s)."
            )
        return y

    def _checked_numeric(self, y):
        if self.class_weight is not None:
            raise TransferkitError(
                "class_weight applies to classifiers; leave it out with ridge."
            )
        if not np.issubdtype(y.dtype, np.number) or y.dtype == bool \
                or not np.isfinite(y).all():
            raise TransferkitError(
                f"ridge needs one finite number per sample as y; got {y.dtype} values."
            )
        if len(y) < 2:
            raise TransferkitError(
                f"Choosing alpha by cross-validation needs at least 2 samples; got {len(y)}."
            )
        return y

    def _check_fitted(self):
        if not hasattr(self, "estimator_"):
            raise TransferkitError("This LinearHead is not fitted yet; call fit first.")


def _mean_label_accuracy(estimator, features, y):
    """The share of (sample, label) decisions right at probability 0.5."""
    return float(np.mean(estimator.predict(features) == y))


def _neg_mean_label_log_loss(estimator, features, y):
    """Minus the mean over labels of each label's log loss (a scorer: higher is better)."""
    from sklearn.metrics import log_loss

    probabilities = estimator.predict_proba(features)
    return -float(np.mean([log_loss(y[:, j], probabilities[:, j], labels=[0, 1])
                           for j in range(y.shape[1])]))
