"""`constrain`: constraints the optimizer applies, weights kept, files keep them."""

import keras
import numpy as np
import pytest
from conftest import snapshot

import transferkit
from transferkit import TransferkitError
from transferkit.regularizers.audits import AuditMismatch
from transferkit.regularizers.constraint_specs import KINDS
from transferkit.regularizers.constraints import constrain, default_axis, get_constraint

EPS = keras.config.epsilon()


def dense_model(name="model"):
    return keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(3, name="out")],
        name=name,
    )


def column_norms(w, axis=0):
    return np.sqrt(np.square(np.asarray(w, np.float64)).sum(axis=axis))


def max_norm_numpy(w, c, axis):
    w = np.asarray(w, np.float64)
    norms = np.sqrt(np.square(w).sum(axis=axis, keepdims=True))
    return w * np.clip(norms, 0, c) / (EPS + norms)


def sgd_step(model, x, y, lr):
    model.compile(keras.optimizers.SGD(lr), "mse")
    model.train_on_batch(x, y)


def test_naive_attribute_is_never_applied():
    # The pitfall `constrain` exists for, kept as a regression test of
    # Keras' behaviour: the config changes, the optimizer ignores it.
    model = dense_model()
    layer = model.get_layer("hidden")
    layer.kernel_constraint = keras.constraints.MaxNorm(0.1)
    assert layer.get_config()["kernel_constraint"] is not None
    assert layer.kernel.constraint is None
    sgd_step(model, np.ones((8, 5), "float32"), np.ones((8, 3), "float32"), 0.1)
    assert column_norms(layer.kernel).max() > 0.1


def test_one_training_step_applies_max_norm_as_numpy_computes_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype("float32") * 10
    y = rng.normal(size=(32, 3)).astype("float32") * 100
    free = dense_model("free")
    constrained = dense_model("constrained")
    constrained.set_weights(free.get_weights())
    before = snapshot(constrained)

    report = constrain(constrained, kernel="max_norm:3")
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(constrained)))
    assert [(e.layer, e.weight, e.constraint, e.active) for e in report.entries] == [
        ("hidden", "kernel", "max_norm(3, axis=0)", True),
        ("out", "kernel", "max_norm(3, axis=0)", True)]

    sgd_step(free, x, y, 0.5)
    sgd_step(constrained, x, y, 0.5)
    for name in ("hidden", "out"):
        unconstrained = np.asarray(free.get_layer(name).kernel)
        kernel = np.asarray(constrained.get_layer(name).kernel)
        assert column_norms(unconstrained).max() > 3  # the step did break it
        assert column_norms(kernel).max() <= 3 + 1e-5
        np.testing.assert_allclose(kernel, max_norm_numpy(unconstrained, 3, 0), rtol=1e-5, atol=1e-6)
        # Biases were left unconstrained.
        np.testing.assert_array_equal(constrained.get_layer(name).bias, free.get_layer(name).bias)
    report.verify(constrained, satisfied=True)
    assert all(e.satisfied for e in transferkit.audit(constrained).constraints.entries)


def test_a_traced_train_step_is_retraced_with_the_constraint():
    model = dense_model()
    x, y = np.ones((8, 5), "float32") * 10, np.ones((8, 3), "float32") * 100
    sgd_step(model, x, y, 0.001)  # traces a train step without constraints
    constrain(model, kernel="max_norm:0.5")
    model.train_on_batch(x, y)
    assert column_norms(model.get_layer("out").kernel).max() <= 0.5 + 1e-6


def test_convolution_kernels_get_one_norm_per_filter_and_apply_now_projects():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(5, 3, name="deconv")(x)
    model = keras.Model(inputs, x)
    for layer in (model.get_layer("conv"), model.get_layer("deconv")):
        layer.kernel.assign(layer.kernel * 20.0)
    before = {n: np.asarray(model.get_layer(n).kernel) for n in ("conv", "deconv")}

    report = constrain(model, kernel="max_norm:3", bias="non_neg", apply_now=True)
    conv = model.get_layer("conv").kernel
    deconv = model.get_layer("deconv").kernel
    # (h, w, in, out): a norm per output filter; transposed: (h, w, out, in).
    assert conv.constraint.get_config()["axis"] == [0, 1, 2]
    assert deconv.constraint.get_config()["axis"] == [0, 1, 3]
    np.testing.assert_allclose(conv, max_norm_numpy(before["conv"], 3, (0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deconv, max_norm_numpy(before["deconv"], 3, (0, 1, 3)), rtol=1e-5, atol=1e-6)
    assert column_norms(before["conv"], (0, 1, 2)).min() > 3
    assert column_norms(conv, (0, 1, 2)).max() <= 3 + 1e-5
    assert report.verify(model, satisfied=True).num_active == 4


def test_default_axis_gives_one_norm_per_output_unit():
    cases = [
        (keras.layers.Dense(3), "kernel_constraint", 2, 0),
        (keras.layers.Conv1D(3, 2), "kernel_constraint", 3, [0, 1]),
        (keras.layers.Conv2D(3, 2), "kernel_constraint", 4, [0, 1, 2]),
        (keras.layers.Conv2DTranspose(3, 2), "kernel_constraint", 4, [0, 1, 3]),
        (keras.layers.DepthwiseConv2D(2), "depthwise_constraint", 4, [0, 1]),
        (keras.layers.SeparableConv2D(3, 2), "depthwise_constraint", 4, [0, 1]),
        (keras.layers.SeparableConv2D(3, 2), "pointwise_constraint", 4, [0, 1, 2]),
        (keras.layers.Embedding(10, 4), "embeddings_constraint", 2, 1),
        (keras.layers.Dense(3), "bias_constraint", 1, 0),
    ]
    for layer, attribute, ndim, expected in cases:
        assert default_axis(layer, attribute, ndim) == expected, (layer, attribute)


def test_unit_norm_min_max_norm_and_non_neg_projections():
    rng = np.random.default_rng(1)
    for spec, expected in [
        ("unit_norm", lambda w: w / (EPS + column_norms(w))),
        ("non_neg", lambda w: np.maximum(w, 0)),
        ("min_max_norm:0.5,2", lambda w: w * np.clip(column_norms(w), 0.5, 2) / (EPS + column_norms(w))),
        ("min_max_norm:0.5,2,rate=0.5",
         lambda w: w * (0.5 * np.clip(column_norms(w), 0.5, 2) + 0.5 * column_norms(w))
         / (EPS + column_norms(w))),
    ]:
        model = dense_model()
        kernel = model.get_layer("hidden").kernel
        kernel.assign(rng.normal(size=(5, 4)) * np.array([0.01, 0.1, 1.0, 10.0]))
        before = np.asarray(kernel, np.float64)
        constrain(model, kernel=spec, layers="hidden", apply_now=True)
        np.testing.assert_allclose(kernel, expected(before), rtol=1e-5, atol=1e-7, err_msg=spec)
        assert model.get_layer("out").kernel.constraint is None


def test_layers_select_nested_backbone_layers_and_frozen_ones_are_reported():
    backbone = dense_model("backbone")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(backbone(inputs)))
    backbone.trainable = False
    report = constrain(model, kernel="max_norm:2", layers="backbone/.*")
    assert [e.layer for e in report.entries] == ["backbone/hidden", "backbone/out"]
    assert model.get_layer("head").kernel.constraint is None
    assert len(report.frozen) == 2 and report.num_active == 0
    assert "frozen" in report.to_table()
    report = constrain(model, kernel=keras.constraints.NonNeg(), layers=keras.layers.Dense)
    assert len(report) == 3
    assert {e.constraint for e in report.entries} == {"non_neg"}


def test_save_and_load_keep_the_constraints(tmp_path):
    model = dense_model()
    constrain(model, kernel="max_norm:3", bias="min_max_norm:0,1,axis=0")
    path = tmp_path / "constrained.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert all(np.array_equal(a, b) for a, b in zip(snapshot(loaded), snapshot(model)))
    for name in ("hidden", "out"):
        layer = loaded.get_layer(name)
        assert layer.get_config()["kernel_constraint"]["config"] == {"max_value": 3.0, "axis": 0}
        assert isinstance(layer.kernel.constraint, keras.constraints.MaxNorm)
        assert layer.kernel.constraint.get_config() == {"max_value": 3.0, "axis": 0}
        assert layer.bias.constraint.get_config()["max_value"] == 1.0
    original = transferkit.audit(model).constraints
    reloaded = transferkit.audit(loaded).constraints.verify(loaded)
    assert [(e.layer, e.weight, e.constraint) for e in reloaded.entries] == [
        (e.layer, e.weight, e.constraint) for e in original.entries]
    assert all(e.saved and e.on_variable for e in reloaded.entries)


def test_audit_lists_constraints_beside_penalties():
    model = dense_model()
    transferkit.regularize(model, kernel="l2:1e-3")
    model.get_layer("hidden").kernel.assign(np.full((5, 4), 5.0))
    constrain(model, kernel="max_norm:3", layers="hidden")
    model.get_layer("out").bias_constraint = keras.constraints.NonNeg()  # config only

    report = transferkit.audit(model)
    assert [e.weight for e in report.entries] == ["kernel", "kernel"]  # penalties as before
    report.verify(model)
    entries = {(e.layer, e.weight): e for e in report.constraints.entries}
    assert set(entries) == {("hidden", "kernel"), ("out", "bias")}
    hidden = entries[("hidden", "kernel")]
    assert hidden.active and hidden.saved and not hidden.satisfied  # 5 * sqrt(5) > 3
    assert not entries[("out", "bias")].on_variable
    table = report.to_table()
    assert "max_norm(3, axis=0)" in table and "not yet satisfied" in table
    assert "config only" in table
    assert "2 constraints on 2 layers" in table.splitlines()[-1]
    assert report.to_dict()["constraints"][0]["constraint"] == "max_norm(3, axis=0)"
    with pytest.raises(AuditMismatch, match="hidden.kernel: the weights break max_norm"):
        report.constraints.verify(model, satisfied=True)
    model.get_layer("hidden").kernel.constraint = None
    with pytest.raises(AuditMismatch, match="no longer on the variable"):
        report.constraints.verify(model)


def test_get_constraint_parses_specs():
    assert get_constraint(None) is None
    unit = keras.constraints.UnitNorm(axis=1)
    assert get_constraint(unit) is unit
    cases = {
        "max_norm:3": (keras.constraints.MaxNorm, {"max_value": 3.0, "axis": 0}),
        " MAX_NORM:2.5, axis=[0,1,2] ": (keras.constraints.MaxNorm, {"max_value": 2.5, "axis": [0, 1, 2]}),
        "max_norm:3,axis=-1": (keras.constraints.MaxNorm, {"max_value": 3.0, "axis": -1}),
        "unit_norm": (keras.constraints.UnitNorm, {"axis": 0}),
        "unit_norm:axis=1": (keras.constraints.UnitNorm, {"axis": 1}),
        "non_neg": (keras.constraints.NonNeg, {}),
        "min_max_norm:0.5,2": (keras.constraints.MinMaxNorm,
                               {"min_value": 0.5, "max_value": 2.0, "rate": 1.0, "axis": 0}),
    }
    for spec, (cls, config) in cases.items():
        constraint = get_constraint(spec)
        assert type(constraint) is cls and constraint.get_config() == config, spec
    assert get_constraint("max_norm:3", axis=[0, 1]).get_config()["axis"] == [0, 1]
    assert get_constraint("max_norm:3,axis=2", axis=[0, 1]).get_config()["axis"] == 2


@pytest.mark.parametrize("spec, message", [
    ("max_norm", r"needs 1 number\(s\).*'max_norm:3'"),
    ("max_norm:0", "must be > 0"),
    ("max_norm:abc", "'abc' is not a number"),
    ("max_norm:3,axis=x", "invalid axis"),
    ("max_norm:3,axis=[0,0]", "invalid axis"),
    ("max_norm:3,rate=0.5", "unknown option 'rate'"),
    ("non_neg:1", "needs 0 number"),
    ("min_max_norm:2,1", "0 <= LOW <= HIGH"),
    ("min_max_norm:0.5,2,rate=0", r"rate must be in \(0, 1\]"),
    ("maxnorm:3", "Unknown constraint 'maxnorm:3'"),
    (3, "Invalid constraint 3"),
    (lambda w: w, "a plain function cannot be saved"),
])
def test_bad_specs_fail_in_one_line(spec, message):
    with pytest.raises(TransferkitError, match=message):
        get_constraint(spec)


def test_bad_calls_fail_in_one_line():
    with pytest.raises(TransferkitError, match="Nothing to apply"):
        constrain(dense_model())
    with pytest.raises(TransferkitError, match="axis 2 is out of range"):
        constrain(dense_model(), kernel="max_norm:3,axis=2")
    with pytest.raises(TransferkitError, match="matches no layer"):
        constrain(dense_model(), kernel="max_norm:3", layers="nothing_.*")
    with pytest.raises(TransferkitError, match="has a kernel or bias to constrain"):
        flat = keras.Sequential([keras.Input((2, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
        constrain(flat, kernel="max_norm:3", layers=keras.layers.Flatten)


@pytest.mark.parametrize("kind, cls", [
    ("max_norm", keras.constraints.MaxNorm), ("unit_norm", keras.constraints.UnitNorm),
    ("non_neg", keras.constraints.NonNeg), ("min_max_norm", keras.constraints.MinMaxNorm),
])
def test_each_kind_names_the_arguments_of_its_keras_class(kind, cls):
    # Specs are checked without Keras (constraint_specs); the values and
    # options they name are the Keras class's arguments.
    import inspect

    positional, keywords = KINDS[kind]
    arguments = tuple(name for name, p in inspect.signature(cls.__init__).parameters.items()
                      if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    assert set(positional + keywords) == set(arguments)
    assert arguments[:len(positional)] == positional
    spec = kind + (":" + ",".join(["1"] * len(positional)) if positional else "")
    assert type(get_constraint(spec)) is cls
