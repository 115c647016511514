"""The learning-rate range test: `LRFinder`, `find_learning_rate`."""

import math

import keras
import numpy as np
import pytest

from transferkit.optim import lr_finder
from transferkit.errors import TransferkitError
from transferkit.training.features import feature_extractor, head_model
from transferkit.optim.lr_finder import LRFinder, find_learning_rate

RNG = np.random.default_rng(0)
# Linear regression, unit-variance inputs: SGD diverges above a rate of ~1.
X_LINEAR = RNG.normal(size=(64, 3)).astype("float32")
Y_LINEAR = X_LINEAR @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
# Three classes from a random linear model on 10 standardized features.
X_CLASSES = RNG.normal(size=(512, 10)).astype("float32")
_LOGITS = X_CLASSES @ RNG.normal(size=(10, 3))
Y_CLASSES = np.array([RNG.choice(3, p=np.exp(v) / np.exp(v).sum()) for v in _LOGITS])


def linear_model():
    return keras.Sequential([keras.Input((3,)),
                             keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])


def classifier(batchnorm=False):
    layers = [keras.Input((10,)), keras.layers.Dense(32, activation="relu")]
    if batchnorm:
        layers += [keras.layers.BatchNormalization(), keras.layers.Dropout(0.2)]
    return keras.Sequential(layers + [keras.layers.Dense(3, activation="softmax")])


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def test_the_rates_grow_exponentially_and_are_the_ones_used():
    start, end, steps = 1e-3, 0.5, 12
    finder = find_learning_rate(linear_model(), X_LINEAR, Y_LINEAR, start=start, end=end,
                                steps=steps, batch_size=64, optimizer="sgd", seed=0)
    assert len(finder.learning_rates_) == len(finder.losses_) == steps
    expected = [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]
    assert np.array_equal(finder.learning_rates_, expected)
    # Full-batch gradient descent on the mean squared error, in NumPy: the
    # loss of batch i is taken before its update with rate i.
    w, losses = np.zeros((3, 1)), []
    x, y = X_LINEAR.astype(np.float64), Y_LINEAR.astype(np.float64)
    for rate in expected:
        residual = x @ w - y
        losses.append(np.mean(residual ** 2))
        w -= rate * 2 / len(x) * x.T @ residual
    np.testing.assert_allclose(finder.losses_, losses, rtol=2e-5)
    assert not finder.stopped_early_
    # The smoothing: a bias-corrected exponential moving average.
    beta, average = 0.98, 0.0
    for i, loss in enumerate(finder.losses_):
        average = beta * average + (1 - beta) * loss
        assert finder.smoothed_losses_[i] == pytest.approx(average / (1 - beta ** (i + 1)),
                                                           rel=1e-12)


def test_a_diverging_loss_stops_the_test_early():
    finder = find_learning_rate(linear_model(), X_LINEAR, Y_LINEAR, start=1e-4, end=1e6,
                                steps=100, batch_size=16, optimizer="sgd", seed=0)
    ran = len(finder.losses_)
    assert finder.stopped_early_ and ran < 100 == finder.steps
    assert len(finder.learning_rates_) == len(finder.smoothed_losses_) == ran
    last = finder.smoothed_losses_[-1]
    assert not math.isfinite(last) or last > 4 * np.nanmin(finder.smoothed_losses_[:-1])
    # Gradient descent on this problem diverges above a rate of about 1
    # (2 / the largest eigenvalue of the Hessian 2 X'X / n).
    assert 1e-3 < finder.suggestion_ < 1


def test_the_suggestion_for_a_standardized_classification_with_adam(tmp_path):
    # Adam moves each weight by about the rate per step whatever the
    # gradient's scale. The weights here are O(1 / sqrt(fan_in)) on
    # unit-variance inputs: far below 1e-3 nothing moves in 100 batches,
    # around 1 every step overshoots. The minimum falls in between and the
    # suggestion, a tenth of it, near Adam's customary 1e-3.
    keras.utils.set_random_seed(0)
    finder = find_learning_rate(classifier(), X_CLASSES, Y_CLASSES, start=1e-6, steps=100,
                                seed=0)
    assert 1e-4 < finder.suggestion_ < 1e-1 and 1e-3 < finder.minimum_rate_ < 1
    assert finder.suggestion_ == finder.minimum_rate_ / 10
    assert 1e-6 < finder.steepest_rate_ <= finder.minimum_rate_
    best = np.nanargmin(finder.smoothed_losses_)
    assert finder.smoothed_losses_[best] < finder.smoothed_losses_[10] - 0.1
    finder.plot(tmp_path / "lr_find.png", title="range test")
    assert [p.name for p in tmp_path.iterdir()] == ["lr_find.png"]
    assert (tmp_path / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = finder.to_dict()
    assert summary["suggestion"] == finder.suggestion_
    assert summary["losses"] == finder.losses_.tolist()


def test_every_variable_and_the_compile_state_are_restored():
    model = classifier(batchnorm=True)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X_CLASSES[:64], Y_CLASSES[:64], batch_size=32, verbose=0)
    before, state = values(model.variables), values(optimizer.variables)

    finder = find_learning_rate(model, X_CLASSES, Y_CLASSES, steps=20, seed=0)
    assert finder.losses_[0] != finder.losses_[-1]
    after = values(model.variables)
    assert len(after) == len(before) == len(model.weights) + 1  # and Dropout's random state
    for old, new in zip(before, after):
        assert np.array_equal(old, new)
    assert model.optimizer is optimizer and model.loss == "sparse_categorical_crossentropy"
    for old, new in zip(state, values(optimizer.variables)):
        assert np.array_equal(old, new)
    # It trains on with its own optimizer, where it left off.
    iterations = int(keras.ops.convert_to_numpy(optimizer.iterations))
    model.train_on_batch(X_CLASSES[:32], Y_CLASSES[:32])
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == iterations + 1

    fresh = classifier()
    find_learning_rate(fresh, X_CLASSES, Y_CLASSES, steps=10, seed=0)
    assert not fresh.compiled and getattr(fresh, "optimizer", None) is None


def test_an_interrupted_test_restores_the_weights(monkeypatch):
    model = classifier(batchnorm=True)
    before = values(model.variables)
    train_on_batch = lr_finder._Trainer.train_on_batch
    seen = []

    def interrupted(self, *args, **kwargs):
        if len(seen) == 4:
            seen.append(values(model.variables))
            raise KeyboardInterrupt
        seen.append(None)
        return train_on_batch(self, *args, **kwargs)

    monkeypatch.setattr(lr_finder._Trainer, "train_on_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        find_learning_rate(model, X_CLASSES, Y_CLASSES, start=1e-3, steps=20)
    # Mid-way the weights and BatchNormalization statistics had moved.
    assert not all(np.array_equal(a, b) for a, b in zip(before, seen[-1]))
    for old, new in zip(before, values(model.variables)):
        assert np.array_equal(old, new)


def test_a_frozen_backbone_stays_frozen():
    """With the backbone frozen, the test on the whole model is the test on
    its head fed the backbone's features: only the head trains, and
    BatchNormalization keeps its moving statistics."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    backbone = keras.Model(inputs, x, name="backbone")
    source = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(source))
    model = keras.Model(source, keras.layers.Dense(3, activation="softmax", name="head")(pooled))
    backbone.trainable = False
    images = RNG.uniform(0, 1, size=(96, 8, 8, 3)).astype("float32")
    labels = RNG.integers(0, 3, size=96)
    features = feature_extractor(model).predict(images, verbose=0)

    arguments = dict(start=1e-4, end=10.0, steps=20, batch_size=16, seed=3)
    whole = LRFinder(**arguments).fit(model, images, labels)
    head = LRFinder(**arguments).fit(head_model(model), features, labels)
    np.testing.assert_allclose(whole.losses_, head.losses_, rtol=1e-4)


@pytest.mark.parametrize("kwargs, words", [
    (dict(start=1.0, end=1.0), "start must be below end"),
    (dict(start=1.0, end=0.1), "start must be below end"),
    (dict(start=0.0), "start must be a finite rate > 0"),
    (dict(start=math.nan), "start must be a finite rate > 0"),
    (dict(end=math.inf), "end must be a finite rate > 0"),
    (dict(steps=9), "steps must be an int >= 10"),
    (dict(steps=50.0), "steps must be an int >= 10"),
    (dict(batch_size=0), "batch_size"),
    (dict(optimizer="adamax"), "Unknown optimizer"),
    (dict(smoothing=1.0), "smoothing must be in"),
    (dict(divergence=1.0), "divergence must be a finite number > 1"),
    (dict(divergence=math.inf), "divergence must be a finite number > 1"),
    (dict(seed=1.5), "seed"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(TransferkitError, match=words):
        LRFinder(**kwargs).fit(linear_model(), X_LINEAR, Y_LINEAR)


def test_bad_models_and_data():
    with pytest.raises(TransferkitError, match="same number"):
        find_learning_rate(linear_model(), X_LINEAR, Y_LINEAR[:10])
    frozen = linear_model()
    frozen.trainable = False
    with pytest.raises(TransferkitError, match="no trainable weights"):
        find_learning_rate(frozen, X_LINEAR, Y_LINEAR)
    with pytest.raises(TransferkitError, match="not built"):
        find_learning_rate(keras.Sequential([keras.layers.Dense(1)]), X_LINEAR, Y_LINEAR)
    with pytest.raises(TransferkitError, match="before plot"):
        LRFinder().plot("never.png")
