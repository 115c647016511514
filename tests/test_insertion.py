"""`insert_dropout`: dropout in a pretrained graph, every weight kept and shared."""

import keras
import numpy as np
import pytest
from conftest import snapshot

import transferkit
from transferkit import TransferkitError
from transferkit._walk import iter_layers
from transferkit.models.insertion import insert_dropout


def residual_backbone():
    """A nested backbone whose `stem` output feeds two layers (a residual add).

    `stem` and `branch` are identities, so the backbone computes
    `add(stem(x), branch(stem(x))) = 2 * x`; conv layers and a
    BatchNormalization hold the usual kinds of pretrained weights.
    """
    inputs = keras.Input((6,), name="features")
    stem = keras.layers.Dense(6, kernel_initializer="identity", name="stem")(inputs)
    branch = keras.layers.Dense(6, kernel_initializer="identity", name="branch")(stem)
    out = keras.layers.Add(name="block_1_add")([stem, branch])
    return keras.Model(inputs, out, name="backbone")


def classifier(dropout=0.0):
    """Like `transferkit.build`: input -> nested backbone -> [dropout] -> head."""
    inputs = keras.Input((6,), name="image")
    x = residual_backbone()(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="toy_classifier")


def conv_model():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="convnet")


def run(model, x, training=False):
    return keras.ops.convert_to_numpy(model(x, training=training))


def dropouts(model):
    return [(layer.name, type(layer).__name__, layer.rate)
            for layer in model.layers if isinstance(layer, keras.layers.Dropout)]


def assert_same_weights(new, old):
    assert len(new.weights) == len(old.weights)
    # The very same variables, hence the same values, bit for bit.
    assert all(a is b for a, b in zip(new.weights, old.weights))
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(new), snapshot(old)))


X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")


def test_head_dropout_keeps_weights_names_and_predictions():
    model = classifier()
    before = snapshot(model)
    new = insert_dropout(model, 0.5)

    assert [layer.name for layer in new.layers] == [
        "image", "backbone", "norm", "dropout_after_norm", "head"]
    assert new.name == model.name
    assert_same_weights(new, model)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model)))
    np.testing.assert_array_equal(run(new, X), run(model, X))
    # Active in training only, with a fresh mask each call.
    first, second = run(new, X, True), run(new, X, True)
    assert not np.allclose(first, second)
    assert not np.allclose(first, run(model, X, True))
    # The original model is left as it was.
    assert dropouts(model) == []


def test_head_dropout_replaces_an_existing_one_instead_of_stacking():
    model = classifier(dropout=0.2)
    new = insert_dropout(model, 0.4)
    assert dropouts(new) == [("dropout", "Dropout", 0.4)]
    assert dropouts(model) == [("dropout", "Dropout", 0.2)]
    # Asking again gives the same rate, still one layer.
    assert dropouts(insert_dropout(new, 0.4)) == [("dropout", "Dropout", 0.4)]
    assert_same_weights(new, model)


def test_rate_zero_leaves_training_outputs_unchanged():
    model = classifier()
    new = insert_dropout(model, 0.0, where=["backbone/stem", "norm"])
    np.testing.assert_allclose(run(new, X, True), run(model, X, True), rtol=1e-6)


def test_every_consumer_of_a_branching_layer_sees_the_dropped_out_tensor():
    model = classifier()
    new = insert_dropout(model, 0.5, where="backbone/stem", seed=3)
    backbone = new.get_layer("backbone")
    assert backbone is not model.get_layer("backbone")
    assert [layer.name for layer in backbone.layers] == [
        "features", "stem", "dropout_after_stem", "branch", "block_1_add"]
    assert_same_weights(new, model)

    ones = np.ones((64, 6), "float32")
    out = run(backbone, ones, True)
    # Both branches read the same dropped-out stem: each output is either
    # 0 + 0 or 2 * (1 / (1 - 0.5)). Had the add read the plain stem, we would
    # see 1 and 3.
    assert set(np.unique(out)) == {0.0, 4.0}
    np.testing.assert_array_equal(run(backbone, ones), 2 * ones)


def test_after_named_layers_in_a_flat_graph_and_spatial_kind():
    model = conv_model()
    new = insert_dropout(model, 0.3, where="conv_a,add", kind="spatial", seed=0)
    assert [layer.name for layer in new.layers] == [
        "image", "conv_a", "dropout_after_conv_a", "conv_b", "add", "dropout_after_add",
        "avg_pool", "head"]
    assert {kind for _, kind, _ in dropouts(new)} == {"SpatialDropout2D"}
    assert_same_weights(new, model)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(run(new, x), run(model, x))


def test_sequential_models_get_dropout_before_the_classifier():
    model = keras.Sequential(
        [keras.Input((6,), name="x"), keras.layers.Dense(5, name="hidden"),
         keras.layers.Dense(3, name="logits"), keras.layers.Activation("softmax", name="probs")],
        name="seq")
    new = insert_dropout(model, 0.25)
    assert isinstance(new, keras.Sequential) and new.name == "seq"
    # The softmax has no weights: the dropout goes before the layer that does.
    assert [layer.name for layer in new.layers] == [
        "hidden", "dropout_after_hidden", "logits", "probs"]
    assert_same_weights(new, model)
    np.testing.assert_array_equal(run(new, X), run(model, X))


def test_trainable_flags_and_compile_state_are_kept():
    model = classifier()
    model.get_layer("backbone").get_layer("branch").trainable = False
    model.get_layer("norm").trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    new = insert_dropout(model, 0.1, where=["backbone/branch"])
    flags = lambda m: {(n, layer.trainable) for n, layer, _ in iter_layers(m)
                       if "dropout" not in n}
    assert flags(new) == flags(model)
    assert [v.path for v in new.trainable_weights] == [v.path for v in model.trainable_weights]
    assert new.compiled and new.loss == "sparse_categorical_crossentropy"

    model.get_layer("backbone").trainable = False
    new = insert_dropout(model, 0.1, where=["backbone/branch"])
    assert new.get_layer("backbone").trainable is False
    assert flags(new) == flags(model)
    assert [v.path for v in new.trainable_weights] == ["head/kernel", "head/bias"]


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = classifier(dropout=0.2)
    new = insert_dropout(model, 0.5, where=["backbone/stem", "norm"], seed=7)
    path = tmp_path / "dropped.keras"
    new.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert [layer.name for layer in loaded.get_layer("backbone").layers] == [
        layer.name for layer in new.get_layer("backbone").layers]
    assert dropouts(loaded) == dropouts(new)
    # The dropout that followed `norm` had its rate replaced: still one.
    assert dropouts(loaded) == [("dropout", "Dropout", 0.5)]
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(loaded), snapshot(model)))
    np.testing.assert_array_equal(run(loaded, X), run(model, X))
    assert not np.allclose(run(loaded, X, True), run(loaded, X))


@pytest.fixture(scope="module")
def mobilenet():
    return transferkit.build("mobilenet_v3_small", 2, weights=None, input_shape=(32, 32, 3))


def test_after_each_block_of_a_catalogue_backbone(mobilenet):
    transferkit.freeze(mobilenet, "blocks:2")
    new = insert_dropout(mobilenet, 0.2, where="blocks", kind="spatial", seed=1)
    backbone = new.get_layer("backbone")
    inserted = [layer for layer in backbone.layers if layer.name.startswith("dropout_after_")]
    # One per block, after the layer whose output leaves the block: the add
    # of a residual block, the projection's BatchNormalization otherwise.
    assert len(inserted) == 11
    assert {type(layer).__name__ for layer in inserted} == {"SpatialDropout2D"}
    names = [layer.name for layer in inserted]
    assert names[:3] == ["dropout_after_expanded_conv_project_bn",
                         "dropout_after_expanded_conv_1_project_bn",
                         "dropout_after_expanded_conv_2_add"]
    assert names[-1] == "dropout_after_expanded_conv_10_add"
    assert_same_weights(new, mobilenet)
    assert [v.path for v in new.trainable_weights] == [v.path for v in mobilenet.trainable_weights]

    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(run(new, images), run(mobilenet, images))
    # With random weights the features are tiny (~1e-10): compare relative
    # to their size. Two training calls drop different feature maps.
    first, second = (run(backbone, images, True) for _ in range(2))
    assert np.abs(first - second).max() > 0.1 * np.abs(first).max() > 0
    # Inserting again replaces the rates rather than stacking.
    again = insert_dropout(new, 0.1, where="blocks")
    rates = [(layer.name, layer.rate) for layer in again.get_layer("backbone").layers
             if isinstance(layer, keras.layers.Dropout)]
    assert [n for n, _ in rates] == names and {r for _, r in rates} == {0.1}


def test_bad_arguments_fail_in_one_line():
    model = classifier()
    for rate in (1.0, -0.1, True, "0.5"):
        with pytest.raises(TransferkitError, match=r"rate must be a number in \[0, 1\)"):
            insert_dropout(model, rate)
    with pytest.raises(TransferkitError, match=r"did you mean 'backbone/stem'"):
        insert_dropout(model, 0.1, where="backbone/stme")
    with pytest.raises(TransferkitError, match=r"no layer 'stem'; did you mean 'backbone/stem'"):
        insert_dropout(model, 0.1, where=["stem"])
    for where in (5, "", [], [3]):
        with pytest.raises(TransferkitError, match="Invalid where"):
            insert_dropout(model, 0.1, where=where)
    with pytest.raises(TransferkitError, match="kind must be"):
        insert_dropout(model, 0.1, kind="gaussian")
    with pytest.raises(TransferkitError, match="rank 3 to 5.*has rank 2"):
        insert_dropout(model, 0.1, kind="spatial")
    with pytest.raises(TransferkitError, match="is an input layer"):
        insert_dropout(model, 0.1, where="image")
    with pytest.raises(TransferkitError, match="Block names are needed"):
        insert_dropout(conv_model(), 0.1, where="blocks")
    with pytest.raises(TransferkitError, match="belongs to block 'conv9'"):
        insert_dropout(conv_model(), 0.1, where="blocks", blocks=["conv9"])

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(X)
    with pytest.raises(TransferkitError, match="subclassed"):
        insert_dropout(subclassed, 0.1)
