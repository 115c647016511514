"""Mixed precision: a 16-bit backbone, a float32 head, loss and penalties; scoped policy."""

import json

import keras
import numpy as np
import pytest
from conftest import numpy_penalty
from helpers import FAST, make_folder, run

import transferkit
from transferkit.errors import TransferkitError
from transferkit.models.precision import compute_dtypes, dtype_policy, policy_name
from transferkit.training.config import TrainingConfig
from transferkit.training.features import FeatureCache, feature_extractor

SMALL = {"weights": None, "input_shape": (32, 32, 3)}


def small(precision, **kwargs):
    return transferkit.build("mobilenet_v3_small", 3, precision=precision, **SMALL, **kwargs)


def pixels(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_mixed_computes_the_backbone_in_bfloat16_on_a_cpu_and_the_head_in_float32():
    model = small("mixed", dropout=0.2)
    assert policy_name("mixed") == "mixed_bfloat16"  # no GPU here
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    backbone = model.get_layer("backbone")
    assert backbone.dtype_policy.name == "mixed_bfloat16"
    assert compute_dtypes(backbone) == ["bfloat16"]
    for name in ("avg_pool", "dropout", "head"):
        assert model.get_layer(name).compute_dtype == "float32", name
    assert all(v.dtype == "float32" for v in model.weights)  # variables stay float32
    probabilities = model.predict(pixels(), verbose=0)
    assert probabilities.dtype == np.float32
    # A float32 softmax sums to one as float32 does (a bfloat16 one is off by ~1e-2).
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_float32_precision_leaves_every_layer_in_float32():
    model = small("float32")
    assert compute_dtypes(model) == ["float32"]
    assert model.get_layer("head").dtype_policy.name == "float32"


def test_penalties_of_a_mixed_model_are_float32_and_equal_numpys():
    model = small("mixed", kernel="l2:1e-3")
    losses = model.losses
    assert losses and all(str(loss.dtype) in ("float32", "<dtype: 'float32'>") for loss in losses)
    total = float(sum(np.asarray(keras.ops.convert_to_numpy(loss), np.float64) for loss in losses))
    np.testing.assert_allclose(total, numpy_penalty(model, l2=1e-3), rtol=1e-5)


def test_a_mixed_model_reloads_with_its_policies_and_outputs(tmp_path):
    model = small("mixed")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert compute_dtypes(again.get_layer("backbone")) == ["bfloat16"]
    assert again.get_layer("head").compute_dtype == "float32"
    x = pixels()
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mixed_and_float32_features_of_the_same_weights_are_cached_apart(tmp_path):
    full, mixed = small("float32"), small("mixed")
    mixed.set_weights(full.get_weights())
    x = pixels()
    cache = FeatureCache(tmp_path)
    f32 = cache.features(feature_extractor(full), x)
    f16 = cache.features(feature_extractor(mixed), x)
    assert not cache.last_hit_  # another key, computed afresh
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert not np.array_equal(f32, f16)
    np.testing.assert_allclose(f16, f32, atol=0.1 * np.abs(f32).max())  # bfloat16, not garbage


def test_float16_models_get_keras_loss_scaling(monkeypatch):
    # On a GPU "mixed" is mixed_float16, whose small gradients need loss
    # scaling; Keras adds it when the model itself carries the policy.
    monkeypatch.setattr(keras.distribution, "list_devices", lambda *a: ["gpu:0"])
    assert policy_name("mixed") == "mixed_float16"
    model = small("mixed")
    assert model.dtype_policy.name == "mixed_float16"
    model.compile("adam", "sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_a_given_model_cannot_be_made_mixed_silently():
    model = small("float32")
    with pytest.raises(TransferkitError, match="catalogue backbones"):
        transferkit.build(model.get_layer("backbone"), 2, precision="mixed")
    with pytest.raises(TransferkitError, match="precision must be one of"):
        small("half")


def test_dtype_policy_is_restored_after_an_error():
    with pytest.raises(RuntimeError), dtype_policy("mixed_bfloat16"):
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"


def test_train_precision_mixed_records_it_and_saves_a_mixed_model(tmp_path):
    data = make_folder(tmp_path / "data", n=6)
    out = tmp_path / "run"
    assert run("train", data, "--out", out, *FAST, "--precision", "mixed",
               "--kernel", "l2:1e-4", "--epochs", "2,0") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["precision"] == "mixed"
    model = keras.saving.load_model(out / "model.keras")
    assert compute_dtypes(model.get_layer("backbone")) == ["bfloat16"]
    assert model.get_layer("head").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_an_unknown_precision_is_refused_before_any_work(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=3)
    with pytest.raises(SystemExit) as exit_:
        run("train", data, "--out", tmp_path / "run", *FAST, "--precision", "half")
    assert exit_.value.code == 2
    assert "--precision: invalid choice: 'half'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(TransferkitError, match="precision must be one of 'float32', 'mixed'"):
        TrainingConfig("efficientnet_lite0", precision="half")
