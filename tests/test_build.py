"""`transferkit.build`: structure, penalties, save and reload, one-line mistakes."""

import keras
import numpy as np
import pytest
from conftest import loss_total, numpy_penalty, snapshot

import transferkit
from transferkit.errors import TransferkitError

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def images(shape=(32, 32, 3), n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n,) + shape).astype("float32")


@pytest.fixture(scope="module")
def classifier():
    return transferkit.build(
        "mobilenet_v2", 3, weights=None, input_shape=(32, 32, 3), dropout=0.2,
        kernel="l2:1e-4", bias="l1:1e-5",
    )


def test_raw_images_backbone_pooling_dropout_head(classifier):
    assert [layer.name for layer in classifier.layers] == [
        "image", "backbone", "avg_pool", "dropout", "head"
    ]
    backbone = classifier.get_layer("backbone")
    assert isinstance(backbone, keras.Model)
    assert backbone.get_layer("preprocessing") is not None  # raw pixels in
    head = classifier.get_layer("head")
    assert head.units == 3 and head.activation is keras.activations.softmax
    assert classifier.name == "mobilenet_v2_classifier"
    probabilities = classifier.predict(images(), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_penalties_cover_backbone_and_head(classifier):
    expected = numpy_penalty(classifier, l2_names=KERNELS, l2=1e-4, l1=1e-5)
    assert loss_total(classifier) == pytest.approx(expected, rel=1e-5)
    report = transferkit.audit(classifier).verify(classifier)
    layers = {e.layer for e in report.entries}
    assert "head" in layers and "backbone/block_16_project" in layers


def test_saved_model_reloads_in_safe_mode_and_predicts_the_same(classifier, tmp_path):
    path = tmp_path / "model.keras"
    classifier.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode is on by default
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(classifier), snapshot(loaded)))
    np.testing.assert_allclose(
        loaded.predict(images(), verbose=0), classifier.predict(images(), verbose=0),
        rtol=1e-5, atol=1e-6,
    )
    assert loss_total(loaded) == pytest.approx(loss_total(classifier), rel=1e-6)


def test_caffe_family_with_channel_flip_round_trips(tmp_path):
    model = transferkit.build("vgg16", 4, head="sigmoid", weights=None,
                              input_shape=(32, 32, 3), pooling="max")
    assert model.get_layer("head").activation is keras.activations.sigmoid
    assert "max_pool" in [layer.name for layer in model.layers]
    path = tmp_path / "vgg.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images(), verbose=0),
                               model.predict(images(), verbose=0), rtol=1e-5, atol=1e-6)


def test_binary_and_linear_heads():
    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
    binary = transferkit.build(backbone, 2, head="binary")
    assert binary.output.shape == (None, 1)
    assert binary.get_layer("head").activation is keras.activations.sigmoid
    linear = transferkit.build(backbone, 1, head="linear")
    assert linear.get_layer("head").activation is keras.activations.linear
    # The user's model is the backbone, under the common name.
    assert linear.get_layer("backbone").get_layer("c") is backbone.get_layer("c")


def test_backbone_from_a_saved_classifier_cut_before_its_head(tmp_path):
    old = transferkit.build("mobilenet_v2", 5, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "old.keras"
    old.save(path)

    new = transferkit.build(str(path), 2, cut_at="avg_pool", name="retrained")

    assert new.name == "retrained"
    assert new.get_layer("head").units == 2
    trunk = keras.Model(old.inputs[0], old.get_layer("avg_pool").output)
    features = new.get_layer("backbone")
    np.testing.assert_allclose(features(images()), trunk(images()), rtol=1e-5, atol=1e-6)
    assert "avg_pool" not in [layer.name for layer in new.layers]  # vectors: no 2nd pooling


def test_regularize_addresses_backbone_blocks_by_name():
    model = transferkit.build("mobilenet_v2", 3, weights=None, input_shape=(32, 32, 3))
    report = transferkit.regularize(model, kernel="l2:1e-3", layers=r"^backbone/block_16_")
    assert {e.layer.split("_")[0] for e in report.entries} == {"backbone/block"}
    assert all(e.layer.startswith("backbone/block_16_") for e in report.entries)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(backbone="resnet5", num_classes=3), "did you mean 'resnet50'"),
        (dict(backbone="resnet50", num_classes=1), "needs num_classes >= 2"),
        (dict(backbone="resnet50", num_classes=3, head="binary"), "head='binary' is for two"),
        (dict(backbone="resnet50", num_classes=3, head="softmaxx"), "head must be one of"),
        (dict(backbone="resnet50", num_classes=3, input_shape=(16, 16, 3)), "at least 32x32"),
        (dict(backbone="resnet50", num_classes=3, input_shape=(64, 64, 1)), "3 channels"),
        (dict(backbone="resnet50", num_classes=3, dropout=1.0), "dropout must be"),
        (dict(backbone="resnet50", num_classes=3, pooling="sum"), "pooling must be"),
        (dict(backbone="resnet50", num_classes=3, kernel="l3:1"), "Unknown penalty"),
    ],
)
def test_mistakes_raise_one_line_errors_before_building(kwargs, words):
    with pytest.raises(TransferkitError) as error:
        transferkit.build(weights=None, **kwargs)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_saved_file_without_the_layer_names_some_layers(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(name="flat"), keras.layers.Dense(2, name="out")])
    path = tmp_path / "m.keras"
    model.save(path)
    with pytest.raises(TransferkitError, match=r"has no layer 'pool'; its last layers are: conv, flat, out"):
        transferkit.build(str(path), 2, cut_at="pool")


def test_head_is_the_former_name_of_output_and_warns():
    with pytest.warns(DeprecationWarning, match="output="):
        old = transferkit.build("mobilenet_v3_small", 2, head="binary", weights=None,
                                input_shape=(32, 32, 3))
    new = transferkit.build("mobilenet_v3_small", 2, output="binary", weights=None,
                            input_shape=(32, 32, 3))
    assert old.output.shape == new.output.shape == (None, 1)
    assert old.get_layer("head").activation is new.get_layer("head").activation
    with pytest.raises(transferkit.TransferkitError, match="output must be one of"):
        transferkit.build("mobilenet_v3_small", 2, output="softmaxx", weights=None)
