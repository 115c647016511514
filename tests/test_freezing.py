"""Freeze plans: which backbone layers train, and BatchNormalization in inference mode."""

import keras
import numpy as np
import pytest
from conftest import snapshot

import transferkit
from transferkit.errors import TransferkitError
from transferkit.models.freezing import FreezePlan, freeze, parse_plan


def small_backbone():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Conv2D(4, 1, name="conv3")(x)
    return keras.Model(inputs, x, name="small")


@pytest.fixture
def model():
    return transferkit.build(small_backbone(), 3)


def trainable_names(model):
    return [layer.name for layer in model.get_layer("backbone").layers if layer.trainable
            and layer.weights]


@pytest.mark.parametrize("text, plan", [
    ("none", FreezePlan("none")), ("all", FreezePlan("all")), ("last:3", FreezePlan("last", 3)),
    ("fraction:0.5", FreezePlan("fraction", 0.5)), ("from:conv2", FreezePlan("from", "conv2")),
    ("blocks:2", FreezePlan("blocks", 2)), (None, FreezePlan("none")), (4, FreezePlan("last", 4)),
    (0.25, FreezePlan("fraction", 0.25)), (True, FreezePlan("all")),
])
def test_parse_plan(text, plan):
    assert parse_plan(text) == plan


@pytest.mark.parametrize("text", ["some", "last", "last:x", "last:0", "fraction:1.5",
                                  "fraction:0", "all:3", "from:", "blocks:-1", [1]])
def test_bad_plans_say_what_to_write(text):
    with pytest.raises(TransferkitError, match="plan"):
        parse_plan(text)


def test_none_freezes_the_backbone_only(model):
    summary = freeze(model, "none")
    assert model.get_layer("backbone").trainable_weights == []
    assert summary.trainable_params == 0
    names = {v.path for v in model.trainable_weights}
    assert names == {"head/kernel", "head/bias"}


def test_all_keeps_batchnorm_frozen_by_default(model):
    summary = freeze(model, "all")
    assert trainable_names(model) == ["conv1", "conv2", "conv3"]
    assert summary.batchnorm_frozen == 2
    assert not model.get_layer("backbone").get_layer("bn1").trainable
    freeze(model, "all", batchnorm="train")
    assert trainable_names(model) == ["conv1", "bn1", "conv2", "bn2", "conv3"]


@pytest.mark.parametrize("plan, expected", [
    ("last:3", ["conv2", "conv3"]),  # bn2 counts as a weighted layer, stays frozen
    ("last:2", ["conv3"]),
    ("last:1", ["conv3"]),
    ("fraction:0.6", ["conv2", "conv3"]),  # 3 of the 5 weighted layers
    ("from:conv2", ["conv2", "conv3"]),
    ("from:bn1", ["conv2", "conv3"]),
])
def test_partial_plans(model, plan, expected):
    freeze(model, plan)
    assert trainable_names(model) == expected


def test_plans_out_of_range_or_unknown_layer(model):
    with pytest.raises(TransferkitError, match="only 5 layers with weights"):
        freeze(model, "last:6")
    with pytest.raises(TransferkitError, match="did you mean 'conv2'"):
        freeze(model, "from:conv_2")
    with pytest.raises(TransferkitError, match="blocks=<the catalogue name>"):
        freeze(model, "blocks:1")
    with pytest.raises(TransferkitError, match="no layer named 'backbone'"):
        freeze(small_backbone(), "all")


def test_blocks_plan_on_a_catalogue_backbone():
    model = transferkit.build("mobilenet_v2", 2, weights=None, input_shape=(32, 32, 3))
    freeze(model, "blocks:2")  # block names from the model's name, mobilenet_v2
    names = trainable_names(model)
    # Everything from block_15 on, nothing before it.
    assert names[0].startswith("block_15_") and all(
        n.startswith(("block_15_", "block_16_", "Conv_1")) for n in names
    )
    assert "block_14_project" not in names
    with pytest.raises(TransferkitError, match="use at most blocks:16"):
        freeze(model, "blocks:17")


def test_frozen_batchnorm_keeps_its_statistics_while_the_rest_trains(model):
    x = np.random.default_rng(0).normal(5.0, 3.0, (16, 8, 8, 3)).astype("float32")
    y = np.arange(16) % 3
    bn = model.get_layer("backbone").get_layer("bn1")
    freeze(model, "all")  # batchnorm="frozen"
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = snapshot(bn)
    conv_before = snapshot(model.get_layer("backbone").get_layer("conv1"))
    model.train_on_batch(x, y)
    for a, b in zip(before, snapshot(bn)):
        assert np.array_equal(a, b)  # moving mean/variance, gamma, beta untouched
    assert not np.array_equal(conv_before[0], snapshot(model.get_layer("backbone").get_layer("conv1"))[0])

    freeze(model, "all", batchnorm="train")
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    moving_mean = bn.moving_mean.numpy() if hasattr(bn.moving_mean, "numpy") else np.asarray(bn.moving_mean)
    assert not np.array_equal(before[2], moving_mean)  # batch statistics were used


def test_freeze_rejects_a_bad_batchnorm_mode(model):
    with pytest.raises(TransferkitError, match="batchnorm"):
        freeze(model, "all", batchnorm="off")
