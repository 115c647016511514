"""Cached features: the head trained on them matches the head trained through the backbone."""

import os

import keras
import numpy as np
import pytest
from conftest import snapshot

import transferkit
from transferkit.errors import TransferkitError
from transferkit.features import (
    FeatureCache,
    cache_refusal,
    extract_features,
    feature_extractor,
    head_model,
)
from transferkit.recipe import FineTuner, Phase, default_recipe


def tiny_backbone():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2"),
    ], name="tiny")


def tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return transferkit.build(tiny_backbone(), 3, dropout=0.3, **kwargs)


def images(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    y = (x[..., 0].mean(axis=(1, 2)) // 86).astype("int64")
    return x, y


def test_extractor_skips_augmentation_and_the_head_model_shares_layers():
    model = tiny_model(augmentation=transferkit.get_augmentation("flip=horizontal"))
    extractor, head = feature_extractor(model), head_model(model)
    assert "augment" not in [layer.name for layer in extractor.layers]
    assert extractor.get_layer("backbone") is model.get_layer("backbone")
    assert head.get_layer("head") is model.get_layer("head")
    assert head.get_layer("dropout") is model.get_layer("dropout")
    x, _ = images(5)
    features = extract_features(extractor, x, batch_size=2)
    assert features.shape == (5, 16)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    assert cache_refusal(model) == "augmentation on"
    assert cache_refusal(tiny_model()) is None


@pytest.mark.parametrize("cache", [True, "folder"])
def test_cached_head_equals_the_head_trained_through_the_frozen_backbone(tmp_path, cache, capsys):
    x, y = images(30)
    val = images(10, seed=1)
    results = {}
    for path in (False, str(tmp_path / "features") if cache == "folder" else True):
        model = tiny_model()
        start = snapshot(model.get_layer("backbone"))
        tuner = FineTuner([Phase(3, 1e-2, "none", name="head")], batch_size=8, patience=None,
                          seed=0, cache=path, verbose=2)
        tuner.fit(model, x, y, validation_data=val)
        backbone = snapshot(model.get_layer("backbone"))
        assert all(np.array_equal(a, b) for a, b in zip(start, backbone))
        results[bool(path)] = (snapshot(model.get_layer("head")), tuner.history_)
    log = capsys.readouterr().out
    assert "training the head on cached features" in log
    (plain, plain_history), (cached, cached_history) = results[False], results[True]
    assert not np.allclose(plain[0], snapshot(tiny_model().get_layer("head"))[0])  # it trained
    for a, b in zip(plain, cached):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert cached_history.keys() == plain_history.keys()
    for key in plain_history:
        np.testing.assert_allclose(cached_history[key], plain_history[key], rtol=1e-5, atol=1e-6)


def test_a_cached_phase_checkpoints_and_restores_the_full_model(tmp_path):
    x, y = images(30)
    val = images(10, seed=1)
    path = tmp_path / "best.weights.h5"
    model = tiny_model()
    tuner = FineTuner(default_recipe((3, 2), 1e-2), batch_size=8, checkpoint=path, seed=0,
                      verbose=0).fit(model, x, y, validation_data=val)
    assert tuner.history_["phase"] == [0, 0, 0, 1, 1]
    other = tiny_model(seed=5)
    other.load_weights(path)  # a full model's weights, not the head model's
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(other)))
    assert model.evaluate(*val, verbose=0)[0] == pytest.approx(
        tuner.history_["val_loss"][tuner.best_epoch_], rel=1e-4)


def test_augmentation_takes_the_plain_path_and_says_so(capsys):
    model = tiny_model(augmentation=transferkit.get_augmentation("flip=horizontal"))
    FineTuner([Phase(1, 1e-2, "none")], batch_size=8, seed=0, verbose=2).fit(model, *images(16))
    assert "augmentation on: plain path" in capsys.readouterr().out


def test_streaming_to_disk_matches_memory_and_leaves_no_temporary_file(tmp_path):
    extractor = feature_extractor(tiny_model())
    x, _ = images(11)
    path = tmp_path / "sub" / "features.npy"
    streamed = extract_features(extractor, x, batch_size=4, path=path)
    assert isinstance(streamed, np.memmap)
    np.testing.assert_array_equal(streamed, extract_features(extractor, x, batch_size=4))
    assert os.listdir(path.parent) == ["features.npy"]
    with pytest.raises(TransferkitError, match="batch_size"):
        extract_features(extractor, x, batch_size=0)


def test_cache_hits_then_recomputes_on_a_changed_input(tmp_path):
    cache = FeatureCache(tmp_path)
    model = tiny_model()
    extractor = feature_extractor(model)
    x, _ = images(9)
    first = np.array(cache.features(extractor, x, batch_size=4))
    assert cache.last_hit_ is False
    np.testing.assert_array_equal(cache.features(extractor, x, batch_size=4), first)
    assert cache.last_hit_ is True
    changed = x.copy()
    changed[3, 0, 0, 0] ^= 1
    cache.features(extractor, changed, batch_size=4)
    assert cache.last_hit_ is False
    # New backbone weights are a new key too.
    conv = model.get_layer("backbone").get_layer("conv1")
    conv.kernel.assign(conv.kernel * 2)
    cache.features(extractor, x, batch_size=4)
    assert cache.last_hit_ is False
    assert cache.key(extractor, x, preprocessing="a") != cache.key(extractor, x,
                                                                   preprocessing="b")


def test_file_keys_change_with_size_and_modification_time(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    extractor = feature_extractor(tiny_model())
    files = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for file in files:
        file.write_bytes(b"x")
    key = cache.key(extractor, files=files)
    os.utime(files[1], ns=(1, 10**9))
    assert cache.key(extractor, files=files) != key


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta", "no meta"])
def test_a_damaged_cache_entry_is_rebuilt_not_used(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    extractor = feature_extractor(tiny_model())
    x, _ = images(9)
    good = np.array(cache.features(extractor, x, batch_size=4))
    npy = tmp_path / f"{cache.key(extractor, x)}.npy"
    meta = npy.with_suffix(".json")
    data = npy.read_bytes()
    if damage == "truncate":
        npy.write_bytes(data[: len(data) - 40])
    elif damage == "flip":
        npy.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "meta":
        meta.write_text('{"shape": [9, 16], "dtype": "<f4", "sha256": "0"}')
    else:
        meta.unlink()
    rebuilt = cache.features(extractor, x, batch_size=4)
    assert cache.last_hit_ is False
    np.testing.assert_array_equal(rebuilt, good)
    assert npy.read_bytes() == data
    cache.features(extractor, x, batch_size=4)
    assert cache.last_hit_ is True


def test_cache_argument_is_checked():
    with pytest.raises(TransferkitError, match="cache must be"):
        FineTuner([Phase(1, 1e-3)], cache=3, verbose=0).fit(tiny_model(), *images(8))
