"""Layer presets: `functools.partial` for layers, with transferkit's specs."""

import functools

import keras
import numpy as np
import pytest
from conftest import loss_total, snapshot

from transferkit import TransferkitError
from transferkit.models.layer_presets import LayerPreset, get_preset, layer_preset, list_presets


def test_named_preset_builds_a_regularized_head_in_one_line():
    Dense = get_preset("dense-elu-he", kernel_regularizer="l2:1e-2")
    model = keras.Sequential([keras.Input((64,)), Dense(100), Dense(100),
                              keras.layers.Dense(10, activation="softmax")])
    hidden = model.layers[:2]
    for layer in hidden:
        assert layer.activation is keras.activations.elu
        assert isinstance(layer.kernel_initializer, keras.initializers.HeNormal)
        assert layer.kernel_regularizer.get_config() == {"l2": 0.01}
        assert layer.kernel.regularizer is layer.kernel_regularizer
    assert model.layers[2].kernel_regularizer is None
    expected = sum(0.01 * np.square(np.asarray(layer.kernel, np.float64)).sum() for layer in hidden)
    assert loss_total(model) == pytest.approx(expected, rel=1e-5)


def test_call_arguments_override_the_defaults():
    Dense = get_preset("dense-relu-he")
    layer = Dense(3, activation="tanh", name="out")
    assert layer.activation is keras.activations.tanh and layer.name == "out"
    assert isinstance(layer.kernel_initializer, keras.initializers.HeNormal)
    assert Dense(3).activation is keras.activations.relu  # the preset is unchanged


def test_selu_preset_uses_lecun_normal():
    layer = get_preset("dense-selu")(8)
    assert layer.activation is keras.activations.selu
    assert isinstance(layer.kernel_initializer, keras.initializers.LecunNormal)


def test_same_layer_as_functools_partial():
    ours = layer_preset(keras.layers.Dense, activation="elu", kernel_initializer="he_normal",
                        kernel_regularizer="l2:1e-2")
    theirs = functools.partial(keras.layers.Dense, activation="elu", kernel_initializer="he_normal",
                               kernel_regularizer=keras.regularizers.l2(0.01))
    assert ours(7, name="d").get_config() == theirs(7, name="d").get_config()


def test_constraint_specs_get_one_norm_per_unit_and_reach_the_optimizer():
    dense = get_preset("dense-max-norm")(4)
    conv = layer_preset(keras.layers.Conv2D, kernel_constraint="max_norm:2")(3, 3)
    assert dense.kernel_constraint.get_config() == {"max_value": 3.0, "axis": 0}
    assert conv.kernel_constraint.get_config() == {"max_value": 2.0, "axis": [0, 1, 2]}
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Flatten()(conv(inputs))
    model = keras.Model(inputs, dense(x))
    # Set before the layers were built: the variables carry them.
    assert conv.kernel.constraint is conv.kernel_constraint
    assert dense.kernel.constraint is dense.kernel_constraint
    conv.kernel.assign(conv.kernel * 100)
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    model.train_on_batch(np.ones((2, 5, 5, 2), "float32"), np.ones((2, 4), "float32"))
    norms = np.sqrt(np.square(np.asarray(conv.kernel, np.float64)).sum(axis=(0, 1, 2)))
    assert norms.max() <= 2 + 1e-5


def test_preset_layers_save_and_load_in_safe_mode(tmp_path):
    Dense = get_preset("dense-l2", kernel_constraint="max_norm:3")
    Conv = get_preset("conv2d-relu-he", bias_regularizer="l1:1e-4")
    model = keras.Sequential([keras.Input((6, 6, 1)), Conv(2, 3), keras.layers.Flatten(),
                              Dense(5), get_preset("dense-selu")(4)])
    path = tmp_path / "presets.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(loaded), snapshot(model)))
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 1)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    assert loss_total(loaded) == pytest.approx(loss_total(model), rel=1e-6)
    assert loaded.layers[2].kernel.constraint.get_config() == {"max_value": 3.0, "axis": 0}


def test_every_named_preset_builds_a_layer_and_says_why():
    presets = list_presets()
    assert {"dense-relu-he", "dense-elu-he", "dense-selu", "dense-l2", "dense-max-norm",
            "conv2d-relu-he"} <= set(presets)
    for name, why in presets.items():
        assert len(why) > 40, name
        preset = get_preset(name)
        if issubclass(preset.layer_class, keras.layers.Conv2D):
            assert preset(2, 3)(np.ones((1, 4, 4, 1), "float32")).shape == (1, 4, 4, 2)
        else:
            assert preset(2)(np.ones((1, 3), "float32")).shape == (1, 2)


def test_with_defaults_returns_a_new_preset():
    base = get_preset("dense-relu-he")
    regularized = base.with_defaults(kernel_regularizer="l2:1e-3")
    assert isinstance(regularized, LayerPreset) and "kernel_regularizer" not in base.defaults
    assert regularized(2).kernel_regularizer.get_config() == {"l2": 0.001}
    assert repr(regularized) == (
        "LayerPreset(Dense, activation='relu', kernel_initializer='he_normal', "
        "kernel_regularizer='l2:1e-3')")


def test_mistakes_fail_when_the_preset_is_made():
    with pytest.raises(TransferkitError, match="did you mean .*'dense-elu-he'"):
        get_preset("dense-elu")
    with pytest.raises(TransferkitError, match="Dense has no argument 'activaton'; did you mean 'activation'"):
        layer_preset(keras.layers.Dense, activaton="relu")
    with pytest.raises(TransferkitError, match="Dense has no argument 'unitz'"):
        get_preset("dense-relu-he")(3, unitz=4)
    with pytest.raises(TransferkitError, match="strength 'abc' is not a number"):
        get_preset("dense-relu-he", kernel_regularizer="l2:abc")
    with pytest.raises(TransferkitError, match="Unknown constraint"):
        layer_preset(keras.layers.Dense, kernel_constraint="maxnorm:3")
    with pytest.raises(TransferkitError, match="needs a Keras layer class"):
        layer_preset(keras.layers.Dense(3))
