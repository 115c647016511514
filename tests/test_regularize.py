"""`regularize`: penalties reach the loss, weights stay, files keep them."""

import keras
import numpy as np
import pytest
from conftest import loss_total, numpy_penalty, snapshot

import transferkit
from transferkit import AuditMismatch, TransferkitError

# Backend-agnostic core: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends


def every_kind_of_weight_layer():
    """One model with each layer type whose weights take a penalty."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    t = keras.layers.Embedding(20, 4, name="embedding")(tokens)
    t = keras.layers.Conv1D(3, 2, name="conv1d")(t)
    t = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d", name="einsum")(t)
    t = keras.layers.GlobalAveragePooling1D()(t)

    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv2d")(image)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.SeparableConv2D(4, 1, name="separable")(x)
    x = keras.layers.Conv2DTranspose(2, 3, name="conv2d_transpose")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)

    volume = keras.Input((4, 4, 4, 1), name="volume")
    v = keras.layers.Conv3D(2, 2, name="conv3d")(volume)
    v = keras.layers.Conv3DTranspose(2, 2, name="conv3d_transpose")(v)
    v = keras.layers.GlobalAveragePooling3D()(v)

    h = keras.layers.Concatenate()([t, x, v])
    out = keras.layers.Dense(2, name="dense")(h)
    return keras.Model([tokens, image, volume], out)


def small_dense(name="head"):
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ],
        name=name,
    )


def test_naive_attribute_adds_no_penalty():
    # Seed 000's pitfall, kept as a regression test of Keras' behaviour: the
    # config changes, the loss does not.
    model = small_dense()
    for layer in model.layers:
        layer.kernel_regularizer = keras.regularizers.L2(0.1)
    assert model.layers[0].get_config()["kernel_regularizer"] is not None
    assert model.losses == []


def test_every_weight_layer_type_gets_its_penalty_and_keeps_its_weights():
    model = every_kind_of_weight_layer()
    before = snapshot(model)
    report = transferkit.regularize(model, kernel="l2:1e-3", bias="l1:1e-2")

    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model)))
    expected = numpy_penalty(model, l2=1e-3, l1=1e-2)
    assert loss_total(model) == pytest.approx(expected, rel=1e-5)
    assert report.total == pytest.approx(expected, rel=1e-6)
    weights = {(e.layer, e.weight) for e in report.entries}
    for name in ("embedding", "conv1d", "einsum", "conv2d", "depthwise", "conv2d_transpose",
                 "conv3d", "conv3d_transpose", "dense"):
        assert (name, "embeddings" if name == "embedding" else "kernel") in weights
    assert {("separable", "depthwise_kernel"), ("separable", "pointwise_kernel"), ("einsum", "bias")} <= weights
    report.verify(model)


def test_l1_and_elastic_net_penalties_equal_numpy():
    model = small_dense()
    transferkit.regularize(model, kernel="l1_l2:1e-3,1e-2")
    w = [np.asarray(v, dtype=np.float64) for v in model.weights if v.name == "kernel"]
    expected = sum(1e-3 * np.abs(k).sum() + 1e-2 * np.square(k).sum() for k in w)
    assert loss_total(model) == pytest.approx(expected, rel=1e-5)


def test_nested_backbone_is_walked():
    backbone = small_dense("backbone")
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, name="new_head")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    report = transferkit.regularize(model, kernel="l2:1e-2")
    assert {e.layer for e in report.entries} == {"backbone/hidden", "backbone/out", "new_head"}
    assert loss_total(model) == pytest.approx(numpy_penalty(model, l2=1e-2), rel=1e-5)


def test_layer_filter_by_regex_and_by_type():
    model = every_kind_of_weight_layer()
    by_regex = transferkit.regularize(model, kernel="l2:1e-3", layers=r"^conv\dd$")
    assert {e.layer for e in by_regex.entries} == {"conv1d", "conv2d", "conv3d"}

    model = every_kind_of_weight_layer()
    by_type = transferkit.regularize(model, bias="l1:1e-3", layers=keras.layers.Dense)
    assert [(e.layer, e.weight) for e in by_type.entries] == [("dense", "bias")]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(), "Nothing to apply"),
        (dict(kernel="l2:1e-4", layers="no_such_layer"), "matches no layer"),
        (dict(kernel="l2:1e-4", layers="(unclosed"), "Invalid layer pattern"),
        (dict(kernel="l2:1e-4", layers=3), "Invalid layers"),
        (dict(kernel="l2:-1"), ">= 0"),
        (dict(kernel="l2:1e-4", layers=keras.layers.LayerNormalization), "matches no layer"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs, words):
    with pytest.raises(TransferkitError, match=words):
        transferkit.regularize(small_dense(), **kwargs)


def test_unbuilt_model_is_refused():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(TransferkitError, match="not built"):
        transferkit.regularize(model, kernel="l2:1e-4")


def test_one_training_step_loss_includes_the_penalty():
    model = small_dense()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 1)).astype("float32")
    # Trace the train step before regularizing: a compiled step must not keep
    # the penalty-free loss it saw then.
    plain = float(model.train_on_batch(x, y))
    data_loss = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    assert plain == pytest.approx(data_loss, rel=1e-5)

    transferkit.regularize(model, kernel="l2:0.5")
    penalty = numpy_penalty(model, l2=0.5)
    assert penalty > 0.1
    assert float(model.train_on_batch(x, y)) == pytest.approx(data_loss + penalty, rel=1e-5)
    assert float(model.evaluate(x, y, verbose=0)) == pytest.approx(data_loss + penalty, rel=1e-5)


def test_activity_penalty_is_added_per_batch_on_layer_outputs():
    model = small_dense()
    report = transferkit.regularize(model, activity="l1:1e-2")
    assert [(e.layer, e.weight, e.value) for e in report.entries] == [
        ("hidden", "activity", None), ("out", "activity", None)]
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    model(x)
    hidden = np.maximum(x @ np.asarray(model.layers[0].kernel) + np.asarray(model.layers[0].bias), 0)
    out = hidden @ np.asarray(model.layers[1].kernel) + np.asarray(model.layers[1].bias)
    # Keras divides activity penalties by the batch size.
    expected = 1e-2 * (np.abs(hidden).sum() + np.abs(out).sum()) / len(x)
    assert loss_total(model) == pytest.approx(expected, rel=1e-5)


def test_frozen_weights_are_reported_inactive_and_count_once_unfrozen():
    backbone = small_dense("backbone")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="new_head")(backbone(inputs)))
    backbone.trainable = False
    report = transferkit.regularize(model, kernel="l2:1e-2")

    assert {e.layer for e in report.frozen} == {"backbone/hidden", "backbone/out"}
    assert [e.layer for e in report.entries if e.active] == ["new_head"]
    head_only = 1e-2 * np.square(np.asarray(model.get_layer("new_head").kernel, dtype=np.float64)).sum()
    assert loss_total(model) == pytest.approx(head_only, rel=1e-5)
    assert report.total == pytest.approx(head_only, rel=1e-6)
    assert "frozen" in report.to_table()
    report.verify(model)

    backbone.trainable = True
    assert loss_total(model) == pytest.approx(numpy_penalty(model, l2=1e-2), rel=1e-5)
    assert all(e.active for e in transferkit.audit(model).entries)


def test_save_and_load_keep_the_penalties(tmp_path):
    model = every_kind_of_weight_layer()
    transferkit.regularize(model, kernel="l2:1e-3", bias="l1:1e-2", activity="l2:1e-4")
    path = tmp_path / "model.keras"
    transferkit.save_model(model, path)
    loaded = transferkit.load_model(path)

    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(loaded)))
    assert loss_total(loaded) == pytest.approx(numpy_penalty(model, l2=1e-3, l1=1e-2), rel=1e-5)
    original = transferkit.audit(model)
    reloaded = transferkit.audit(loaded).verify(loaded)
    assert [(e.layer, e.weight, e.penalty) for e in reloaded.entries] == [
        (e.layer, e.weight, e.penalty) for e in original.entries]
    assert all(e.saved for e in reloaded.entries)
    assert sum(e.weight == "activity" for e in reloaded.entries) == 10


def test_penalty_set_only_on_the_variable_is_flagged_as_not_saved():
    model = small_dense()
    model.layers[0].kernel.regularizer = keras.regularizers.L2(0.1)
    (entry,) = transferkit.audit(model).entries
    assert entry.active and not entry.saved


def test_verify_detects_a_penalty_missing_from_the_loss():
    model = small_dense()
    report = transferkit.regularize(model, kernel="l2:1e-2")
    model.layers[1].kernel.regularizer = None  # taken out behind the audit's back
    with pytest.raises(AuditMismatch, match="out.kernel"):
        report.verify(model)


def test_verify_detects_a_wrong_value():
    model = small_dense()
    report = transferkit.regularize(model, kernel="l2:1e-2")
    # A penalty that differs from the one the audit promises.
    model.layers[0].kernel.regularizer = lambda w: keras.ops.sum(w) * 0 + 123.0
    with pytest.raises(AuditMismatch, match="loss has 123"):
        report.verify(model)


def test_audit_table_lists_each_weight_and_the_total():
    model = small_dense()
    report = transferkit.regularize(model, kernel="l2:1e-2", bias="l1:1e-3")
    table = report.to_table()
    assert table.splitlines()[0].split() == ["layer", "weight", "shape", "penalty", "value", "status"]
    assert "out     kernel  4x1" in table
    assert f"{report.total:.6g}" in table.splitlines()[-1]
    assert report.to_dict()["num_active"] == 4
