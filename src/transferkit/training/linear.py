"""Linear classifiers on frozen features (seed 001's bottleneck recipe).

With under ~1,000 labelled samples, a linear classifier on the pooled
features of a frozen pretrained backbone is often as accurate as a trained
head, and takes seconds. `LinearHead` fits scikit-learn's `LinearSVC` or
`LogisticRegression` on standardized features, choosing the regularization
strength `C` by stratified cross-validation, and turns the result into one
Keras `Dense` layer (the standardization folded into its weights), so the
classifier saves inside the `.keras` model and predicts on every backend,
with no pickle.

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

KINDS = ("logreg", "linear-svm")
DEFAULT_CS = tuple(float(c) for c in np.logspace(-5, 1, 7))


class LinearHead:
    """A linear classifier with cross-validated `C`, exportable as a Keras layer.

    Features are standardized (scikit-learn's `StandardScaler`), then
    classified by `LogisticRegression` (`"logreg"`: class probabilities,
    multinomial for more than two classes) or `LinearSVC`
    (`"linear-svm"`: one-vs-rest decision scores, no probabilities). `C` is
    chosen from `Cs` by `GridSearchCV` over stratified, shuffled, seeded
    folds: by log loss for `"logreg"` (accuracy ties are common on small
    data and would pick an overconfident or washed-out model at random), by
    accuracy for `"linear-svm"`. Ties go to the smaller `C` (more
    regularization). The chosen model is refit on all the data.

    Args:
        kind: `"logreg"` (default) or `"linear-svm"`.
        Cs: the inverse regularization strengths to try. Defaults to
            `1e-5, 1e-4, ..., 10`.
        folds: cross-validation folds, at most the smallest class's count.
            Defaults to 5.
        seed: seeds the folds (and the solvers). Defaults to 0.
        max_iter: the solver's iteration limit. Defaults to 1000.
        class_weight: optional `{class: weight}` or `"balanced"`, as in
            scikit-learn: each class's examples weigh that much in the fit.

    Attributes (after `fit`):
        estimator_: the fitted scikit-learn pipeline (scaler, classifier).
        C_: the chosen `C`.
        classes_: the class labels seen, sorted.
        cv_accuracy_: mean cross-validated accuracy at `C_`.
        cv_results_: one dict per `C`: `C`, `accuracy`, `accuracy_std`,
            `log_loss` (logreg only), `chosen`.
        folds_: the number of folds used.

    Example:

    >>> head = LinearHead("linear-svm", seed=0).fit(train_features, y)  # doctest: +SKIP
    >>> model = head.attach(feature_extractor(model))  # doctest: +SKIP
    """

    def __init__(self, kind="logreg", *, Cs=DEFAULT_CS, folds=5, seed=0, max_iter=1000,
                 class_weight=None):
        self.kind = kind
        self.class_weight = class_weight
        self.Cs = Cs
        self.folds = folds
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, features, y):
        """Chooses `C` by cross-validation and fits on all of `features`; returns `self`."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        features, y = self._checked(features, y)
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
        results = search.cv_results_
        best = int(search.best_index_)
        self.estimator_ = search.best_estimator_
        self.C_ = float(results["param_classify__C"][best])
        self.classes_ = self.estimator_.classes_
        self.folds_ = folds
        self.cv_accuracy_ = float(results["mean_test_accuracy"][best])
        self.cv_results_ = [
            {"C": float(c), "accuracy": float(results["mean_test_accuracy"][i]),
             "accuracy_std": float(results["std_test_accuracy"][i]),
             "log_loss": (-float(results["mean_test_log_loss"][i])
                          if "mean_test_log_loss" in results else None),
             "chosen": i == best}
            for i, c in enumerate(results["param_classify__C"])
        ]
        unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        if unconverged:
            warnings.warn(
                f"{self.kind}: the solver did not converge in {unconverged} of "
                f"{len(self.Cs) * folds + 1} fits (max_iter={self.max_iter}); the large C values "
                "are the usual cause. Raise max_iter if the chosen C is among them.",
                stacklevel=2,
            )
        return self

    def dense_weights(self):
        """`(kernel, bias)` of a Dense layer equal to scaler + classifier.

        The kernel has shape `(features, classes)`. For two classes the single
        score `z` becomes `(-z/2, z/2)` for `"logreg"` (a softmax of which is
        scikit-learn's `predict_proba`) and `(-z, z)` for `"linear-svm"` (the
        predicted class's score is `|z|`, the decision function's size).
        """
        self._check_fitted()
        scaler, classifier = self.estimator_[0], self.estimator_[-1]
        coef = classifier.coef_ / scaler.scale_
        intercept = classifier.intercept_ - coef @ scaler.mean_
        if len(self.classes_) == 2:
            half = 0.5 if self.kind == "logreg" else 1.0
            coef = np.concatenate([-half * coef, half * coef])
            intercept = np.concatenate([-half * intercept, half * intercept])
        return coef.T.astype("float32"), intercept.astype("float32")

    def to_layer(self, name="head"):
        """A built `keras.layers.Dense` computing the classifier's output.

        Softmax (probabilities) for `"logreg"`, linear (decision scores) for
        `"linear-svm"`.
        """
        kernel, bias = self.dense_weights()
        layer = keras.layers.Dense(
            kernel.shape[1], activation="softmax" if self.kind == "logreg" else None, name=name
        )
        layer.build((None, kernel.shape[0]))
        layer.set_weights([kernel, bias])
        return layer

    def attach(self, extractor, name=None):
        """`extractor` (inputs -> features) followed by this classifier, as one model."""
        outputs = self.to_layer()(extractor.outputs[0])
        return keras.Model(extractor.inputs[0], outputs, name=name or f"{extractor.name}_linear")

    def predict_scores(self, features):
        """scikit-learn's `predict_proba` (logreg) or `decision_function` (linear-svm)."""
        self._check_fitted()
        if self.kind == "logreg":
            return self.estimator_.predict_proba(features)
        return self.estimator_.decision_function(features)

    def _checked(self, features, y):
        if self.kind not in KINDS:
            raise TransferkitError(
                f"Unknown linear head {self.kind!r}; use one of {', '.join(KINDS)}."
            )
        Cs = list(self.Cs) if np.iterable(self.Cs) else []
        if not Cs or not all(isinstance(c, numbers.Real) and np.isfinite(c) and c > 0
                             for c in Cs):
            raise TransferkitError(f"Cs must be a non-empty list of positive numbers, got "
                                   f"{self.Cs!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, numbers.Integral) \
                or self.folds < 2:
            raise TransferkitError(f"folds must be an int >= 2, got {self.folds!r}.")
        features = np.asarray(features)
        y = np.asarray(y).reshape(-1)
        if features.ndim != 2 or len(features) != len(y):
            raise TransferkitError(
                f"Expected features of shape (samples, features) and one label per sample; "
                f"got {features.shape} and {y.shape}."
            )
        if len(np.unique(y)) < 2:
            raise TransferkitError("A classifier needs at least two classes in y.")
        return features, y

    def _check_fitted(self):
        if not hasattr(self, "estimator_"):
            raise TransferkitError("This LinearHead is not fitted yet; call fit first.")
