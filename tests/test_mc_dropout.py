"""Monte Carlo dropout: `mc_dropout_predict`, `predict(mc_samples=...)`, `predict --mc-samples`."""

import dataclasses
import math
import re

import keras
import numpy as np
import pytest
from conftest import snapshot
from helpers import FAST, make_folder, run

from transferkit.data import get_augmentation
from transferkit.errors import TransferkitError
from transferkit.evaluation import inference
from transferkit.evaluation.inference import load_run, mc_dropout_predict, predict

RNG = np.random.default_rng(0)
X = RNG.normal(size=(100, 8)).astype("float32") * 2
IMAGES = RNG.uniform(0, 255, size=(12, 8, 8, 3)).astype("float32")


def dense_model(rate=None, *, hidden=None, head=None, units=3):
    """Dense -> [Dropout(rate)] -> softmax head; pass `hidden`/`head` to share layers."""
    hidden = hidden or keras.layers.Dense(64, activation="relu", name="hidden")
    head = head or keras.layers.Dense(units, activation="softmax" if units > 1 else "sigmoid",
                                      name="head")
    inputs = keras.Input((8,))
    x = hidden(inputs)
    if rate is not None:
        x = keras.layers.Dropout(rate, name="dropout")(x)
    return keras.Model(inputs, head(x))


def image_model(inner_rate, outer_rate):
    """augment -> backbone (Conv, BatchNormalization far from the batch's
    statistics, SpatialDropout2D) -> Dropout -> softmax, like `build`'s."""
    source = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="conv")(source)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.SpatialDropout2D(inner_rate, name="drop")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(source, x, name="backbone")
    bn = backbone.get_layer("bn")
    # Moving statistics nothing like the batch's: training mode would change everything.
    bn.moving_mean.assign(np.full(6, 40.0, "float32"))
    bn.moving_variance.assign(np.full(6, 900.0, "float32"))
    inputs = keras.Input((8, 8, 3))
    x = get_augmentation("flip=horizontal,shift=0.3,contrast=0.9", seed=0)(inputs)
    x = keras.layers.Dropout(outer_rate, name="dropout")(backbone(x))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))


def test_without_dropout_the_spread_is_exactly_zero_and_the_mean_is_the_prediction():
    model = dense_model()
    with pytest.warns(UserWarning, match="no dropout layer"):
        result = mc_dropout_predict(model, X, 10, seed=0)
    assert result.dropout_layers == [] and result.samples == 10
    assert np.all(result.std == 0) and np.all(result.mutual_information == 0)
    batches = [keras.ops.convert_to_numpy(model(X[i:i + 32])) for i in range(0, len(X), 32)]
    np.testing.assert_array_equal(result.mean, np.concatenate(batches))
    np.testing.assert_allclose(result.mean, model.predict(X, verbose=0), rtol=0, atol=1e-6)
    p = result.mean
    np.testing.assert_allclose(result.entropy, -np.sum(p * np.log(p), axis=1), rtol=1e-12)


def test_the_mean_converges_to_the_deterministic_prediction_as_the_rate_goes_to_zero():
    hidden = keras.layers.Dense(64, activation="relu", name="hidden")
    head = keras.layers.Dense(3, activation="softmax", name="head")
    deterministic = dense_model(hidden=hidden, head=head).predict(X, verbose=0)
    errors = []
    for rate in (0.5, 0.1, 0.01, 0.001):  # the same weights, only the rate differs
        model = dense_model(rate, hidden=hidden, head=head)
        # One call per sample: all 50 passes side by side.
        result = mc_dropout_predict(model, X, 50, batch_size=50 * len(X), seed=0)
        assert result.dropout_layers == ["dropout"]
        assert result.std.max() > 0 and result.mutual_information.max() > 0
        np.testing.assert_allclose(result.mean.sum(axis=1), 1.0, atol=1e-6)
        errors.append(np.abs(result.mean - deterministic).max())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[0] > 0.05 and errors[-1] < 0.01, errors


def test_batchnorm_and_augmentation_stay_in_inference_mode():
    model = image_model(1e-7, 1e-7)  # dropout that (almost) never drops
    before = snapshot(model)
    states = [keras.ops.convert_to_numpy(v) for v in model.variables if "seed" in v.path]
    result = mc_dropout_predict(model, IMAGES, 5, seed=0)
    assert result.dropout_layers == ["backbone/drop", "dropout"]
    expected = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(result.mean, expected, rtol=0, atol=1e-5)
    # Nothing changed: weights, BatchNormalization statistics, random states,
    # and the layers' call methods are the class's again.
    for old, new in zip(before, snapshot(model)):
        np.testing.assert_array_equal(old, new)
    after = [keras.ops.convert_to_numpy(v) for v in model.variables if "seed" in v.path]
    assert len(after) == len(states) == 5  # three augmentation layers, two dropout
    for old, new in zip(states, after):
        np.testing.assert_array_equal(old, new)
    assert not [layer.name for layer in model._flatten_layers() if "call" in vars(layer)]
    # The test can fail: in training mode (batch statistics, augmented images)
    # the probabilities differ completely.
    trained = keras.ops.convert_to_numpy(model(IMAGES, training=True))
    assert np.abs(trained - expected).max() > 0.1


def test_dropout_inside_the_backbone_is_on_too():
    result = mc_dropout_predict(image_model(0.5, 1e-7), IMAGES, 8, seed=0)
    assert result.std.max() > 0.01


def test_with_dropout_only_in_the_head_the_backbone_runs_once(monkeypatch):
    inputs = keras.Input((8, 8, 3))
    backbone = keras.Model(inputs, keras.layers.BatchNormalization()(
        keras.layers.Conv2D(6, 3, activation="relu")(inputs)), name="backbone")
    rest = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.5, name="dropout"),
            keras.layers.Dense(3, activation="softmax", name="head")]

    def chain(*layers):
        source = keras.Input((8, 8, 3))
        x = source
        for layer in layers:
            x = layer(x)
        return keras.Model(source, x)

    split = chain(backbone, *rest)  # as `build` makes them
    plain = chain(keras.layers.Identity(), backbone, *rest)  # no backbone/head split
    calls = []
    call = backbone.call
    monkeypatch.setattr(backbone, "call", lambda *a, **k: calls.append(1) or call(*a, **k))
    images = IMAGES / 255  # moderate logits: probabilities that vary smoothly
    fast = mc_dropout_predict(split, images, 100, seed=0)
    assert len(calls) == 1  # one chunk of 12 images, once
    calls.clear()
    slow = mc_dropout_predict(plain, images, 100, seed=0)
    assert len(calls) == math.ceil(100 * len(images) / 32)
    assert fast.dropout_layers == slow.dropout_layers == ["dropout"]
    assert fast.std.max() > 0.01
    # Two estimates of the same mean, each with standard error std / sqrt(100).
    error = np.sqrt(fast.std ** 2 + slow.std ** 2) / 10
    assert np.all(np.abs(fast.mean - slow.mean) <= 5 * error)
    np.testing.assert_allclose(fast.std, slow.std, rtol=0.3, atol=0.01)


def test_a_seed_repeats_the_masks():
    model = dense_model(0.3)
    first = mc_dropout_predict(model, X, 6, batch_size=16, seed=7)
    again = mc_dropout_predict(model, X, 6, batch_size=16, seed=7)
    other = mc_dropout_predict(model, X, 6, batch_size=16, seed=8)
    for name in ("mean", "std", "entropy", "mutual_information"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.mean, other.mean)
    # Packed and one-pass-per-call batches are the same estimator.
    loose = mc_dropout_predict(model, X[:3], 60, batch_size=3, seed=0)
    packed = mc_dropout_predict(model, X[:3], 60, batch_size=180, seed=0)
    assert not np.array_equal(loose.mean, packed.mean)
    np.testing.assert_allclose(loose.mean, packed.mean, atol=0.08)
    np.testing.assert_allclose(loose.std, packed.std, atol=0.08)


def test_a_binary_head_gives_two_columns():
    result = mc_dropout_predict(dense_model(0.3, units=1), X, 5, seed=0)
    assert result.mean.shape == result.std.shape == (len(X), 2)
    np.testing.assert_allclose(result.mean.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.std[:, 0], result.std[:, 1], atol=1e-12)
    assert np.all(result.entropy <= np.log(2) + 1e-12)


def test_the_model_is_restored_when_a_pass_fails():
    model = dense_model(0.3)
    layer = model.get_layer("dropout")
    state = keras.ops.convert_to_numpy(layer.seed_generator.state)
    with pytest.raises(ValueError):
        mc_dropout_predict(model, np.zeros((4, 5), "float32"), 3)  # wrong width
    assert "call" not in vars(layer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.seed_generator.state), state)
    np.testing.assert_array_equal(model.predict(X, verbose=0), model.predict(X, verbose=0))


@pytest.mark.parametrize("kwargs, words", [
    (dict(samples=0), "int >= 2"),
    (dict(samples=1), "int >= 2"),
    (dict(samples=-1), "int >= 2"),
    (dict(samples=2.5), "int >= 2"),
    (dict(batch_size=0), "batch_size"),
    (dict(seed="a"), "seed"),
    (dict(x=X[:0]), "empty"),
    (dict(model="head"), "keras.Model"),
    (dict(model="linear"), "class probabilities"),
])
def test_bad_arguments(kwargs, words):
    model = kwargs.pop("model", None)
    model = {None: dense_model(0.2), "head": "head",
             "linear": keras.Sequential([keras.Input((8,)), keras.layers.Dense(3),
                                         keras.layers.Dropout(0.1)])}[model]
    arguments = dict(x=X, samples=4) | kwargs
    with pytest.raises(TransferkitError, match=words):
        mc_dropout_predict(model, **arguments)


# A tiny run with dropout 0.5 before the head. EfficientNet-Lite0's ImageNet
# weights ship with the package; FAST's random MobileNet gives features near
# 0 at 32 px, which dropout would barely move.
MC_FAST = [a for a in FAST if a not in ("--weights", "none")]
MC_FAST[MC_FAST.index("mobilenet_v3_small")] = "efficientnet_lite0"
MC_FAST[MC_FAST.index("--epochs") + 1] = "2,0"


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    data = make_folder(root / "data", n=4)
    out = root / "run"
    assert run("train", data, "--out", out, *MC_FAST, "--dropout", "0.5") == 0
    return data, out, load_run(out)


@pytest.fixture
def cli_run(mc_run, monkeypatch):
    """The run, with the command line's `load_run` reading it from memory
    (loading model.keras takes seconds; test_training covers it)."""
    data, out, loaded = mc_run
    monkeypatch.setattr(inference, "load_run", lambda path: loaded)
    return data, out, loaded


def test_predict_with_mc_samples_prints_the_spread(cli_run, capsys):
    data, out, loaded = cli_run
    capsys.readouterr()
    assert run("predict", out, data / "red", "--mc-samples", "20", "--seed", "3") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    rows = predict(loaded, sorted((data / "red").iterdir()), mc_samples=20, seed=3)
    line = re.compile(r"(\S+)  (\w+)  (\d\.\d{4}) ± (\d\.\d{4})  entropy (\d\.\d{3})")
    for text, row in zip(lines, rows):
        path, label, probability, std, entropy = line.fullmatch(text).groups()
        assert path == row["path"] and label == row["class"]
        assert float(probability) == pytest.approx(row["probability"], abs=5e-5)
        assert float(std) == pytest.approx(row["std"], abs=5e-5) and row["std"] > 0
        assert float(entropy) == pytest.approx(row["entropy"], abs=5e-4)
        assert row["stds"] == pytest.approx([row["std"]] * 2, rel=1e-3)
        assert 0 < row["entropy"] <= np.log(2)

    assert run("predict", out, data / "red", "--mc-samples", "20", "--seed", "3", "--csv") == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == "path,class,probability,p_blue,p_red,std,entropy,std_blue,std_red"
    for text, row in zip(table[1:], rows):
        cells = text.split(",")
        assert [float(c) for c in cells[2:]] == pytest.approx(
            [row["probability"], *row["probabilities"], row["std"], row["entropy"],
             *row["stds"]], abs=1e-6)


def test_a_run_with_decision_scores_refuses_mc_dropout(mc_run):
    data, out, loaded = mc_run
    scores = dataclasses.replace(loaded, outputs="scores")
    with pytest.raises(TransferkitError, match="decision scores"):
        predict(scores, data / "red", mc_samples=5)


@pytest.mark.parametrize("value", ["0", "-1", "1"])
def test_bad_mc_samples_exit_2(mc_run, capsys, value):
    data, out, _ = mc_run
    capsys.readouterr()
    assert run("predict", out, data / "red", "--mc-samples", value) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--mc-samples must be at least 2" in err, err
