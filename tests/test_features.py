"""Cached features: the head trained on them matches the head trained through the backbone."""

import os

import keras
import numpy as np
import pytest
from conftest import snapshot
from helpers import images, tiny_model

import transferkit
from transferkit.errors import TransferkitError
from transferkit.training import recipe
from transferkit.training.features import (
    AugmentedFeatures,
    FeatureCache,
    augmentation_layer,
    cache_refusal,
    extract_features,
    feature_extractor,
    head_model,
)
from transferkit.training.recipe import FineTuner, Phase, default_recipe


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
    assert cache_refusal(model, allow_augmentation=True) is None
    assert augmentation_layer(model) is model.get_layer("augment")
    assert cache_refusal(tiny_model()) is None
    assert augmentation_layer(tiny_model()) is None


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


# Augmented copies of the features (FineTuner(augmented_copies=K)).


def symmetric_images(n=30, seed=0):
    """Images equal to their horizontal mirror: a horizontal flip is the identity on them."""
    x, _ = images(n, seed)
    x = ((x.astype("uint16") + x[:, :, ::-1]) // 2).astype("uint8")
    assert np.array_equal(x, x[:, :, ::-1])
    return x, (x[..., 0].mean(axis=(1, 2)) // 86).astype("int64")


class HeadWeights(keras.callbacks.Callback):
    """Records the trained model's "head" weights at every epoch end."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([np.array(w) for w in self.model.get_layer("head").get_weights()])


def spy(monkeypatch, name):
    """Wraps `transferkit.training.recipe.<name>`; returns the list of `(kwargs, result)` of its calls."""
    calls, real = [], getattr(recipe, name)

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs, result))
        return result

    monkeypatch.setattr(recipe, name, wrapper)
    return calls


def test_augmented_features_serve_copy_e_mod_k_each_sample_once_per_epoch():
    n, k = 10, 3
    ids = np.arange(n)
    copies = [np.stack([np.full(n, c), ids], axis=1).astype("float32") for c in range(k)]
    y, weights = ids * 10, ids / 10
    data = AugmentedFeatures(copies, y, sample_weight=weights, batch_size=4, seed=7)
    assert data.num_batches is None and data.steps_per_epoch == 3
    orders = []
    for epoch in range(7):
        batches = [data[epoch * 3 + step] for step in range(3)]
        assert [len(b[0]) for b in batches] == [4, 4, 2]
        features = np.concatenate([b[0] for b in batches])
        assert np.all(features[:, 0] == epoch % k)  # copy e mod K
        served = features[:, 1].astype(int)
        assert sorted(served) == list(ids)  # every sample once
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), served * 10)
        np.testing.assert_allclose(np.concatenate([b[2] for b in batches]), served / 10)
        np.testing.assert_array_equal(served, data.order(epoch))
        orders.append(tuple(served))
    assert len(set(orders)) > 1  # shuffled per epoch
    again = AugmentedFeatures(copies, y, batch_size=4, seed=7)
    assert [tuple(again.order(e)) for e in reversed(range(7))] == orders[::-1]
    assert len(again[0]) == 2  # no sample weights given
    other = AugmentedFeatures(copies, y, batch_size=4, seed=8)
    assert [tuple(other.order(e)) for e in range(7)] != orders
    with pytest.raises(TransferkitError, match="differ in shape"):
        AugmentedFeatures([copies[0], copies[1][:5]], y)
    with pytest.raises(TransferkitError, match="one target per sample"):
        AugmentedFeatures(copies, y[:5])


def test_augmented_copies_train_the_head_like_batches_in_the_datasets_order(monkeypatch):
    # A flip is the identity on mirror-symmetric images: every copy equals
    # the unaugmented features, and the head trains on the dataset's batches.
    x, y = symmetric_images(30)
    val = symmetric_images(10, seed=1)
    weights = np.random.default_rng(0).uniform(0.5, 1.5, len(x))
    flip = "flip=horizontal"
    datasets = []

    class Spy(AugmentedFeatures):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            datasets.append(self)

    monkeypatch.setattr(recipe, "AugmentedFeatures", Spy)
    model = tiny_model(augmentation=transferkit.get_augmentation(flip))
    start = snapshot(model.get_layer("backbone"))
    recorder = HeadWeights()
    FineTuner([Phase(3, 1e-2, "none", name="head")], batch_size=8, patience=None, seed=0,
              augmented_copies=2, callbacks=[recorder], verbose=0).fit(
        model, x, y, validation_data=val, sample_weight=weights)
    assert all(np.array_equal(a, b) for a, b in zip(start, snapshot(model.get_layer("backbone"))))
    (data,) = datasets
    assert len(data.copies) == 2
    plain = extract_features(feature_extractor(model), x)
    for copy in data.copies:
        np.testing.assert_allclose(copy, plain, rtol=1e-6, atol=1e-7)

    reference = tiny_model(augmentation=transferkit.get_augmentation(flip))
    head = head_model(reference)
    head.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    assert not np.allclose(recorder.epochs[0][0], head.get_layer("head").get_weights()[0])
    for epoch in range(3):
        order = data.order(epoch)
        assert sorted(order) == list(range(len(x)))
        for start in range(0, len(x), 8):
            take = order[start:start + 8]
            head.train_on_batch(plain[take], y[take], sample_weight=weights[take])
        for a, b in zip(recorder.epochs[epoch], head.get_layer("head").get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_random_augmented_copies_differ_repeat_under_the_seed_and_validate_unaugmented(
        monkeypatch, capsys):
    x, y = images(24)
    val = images(8, seed=1)
    runs = []
    for seed in (0, 0, 1):
        calls = spy(monkeypatch, "extract_features")
        model = tiny_model(augmentation=transferkit.get_augmentation("rotate=0.2"))
        FineTuner([Phase(2, 1e-2, "none", name="head")], batch_size=8, patience=None, seed=seed,
                  augmented_copies=2, verbose=2).fit(model, x, y, validation_data=val)
        copies = [np.array(r) for kw, r in calls if kw.get("augment") is not None]
        unaugmented = [np.array(r) for kw, r in calls if kw.get("augment") is None]
        extractor = feature_extractor(model)
        assert len(copies) == 2 and len(unaugmented) == 1
        plain = extract_features(extractor, x)
        assert not np.allclose(copies[0], copies[1])
        assert not np.allclose(copies[0], plain) and not np.allclose(copies[1], plain)
        np.testing.assert_array_equal(unaugmented[0], extract_features(extractor, val[0]))
        runs.append((copies, snapshot(model.get_layer("head"))))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
        np.testing.assert_array_equal(a, b)  # same seed, same copies and head
    assert not np.allclose(runs[0][0][0], runs[2][0][0])  # another seed, other copies
    assert ("training the head on 2 augmented copies of the features in memory, cycled per "
            "epoch (copy e mod 2)") in capsys.readouterr().out


def test_augmented_copies_in_a_cache_folder_keep_the_plain_paths_history_and_checkpoint(
        tmp_path, capsys):
    x, y = images(24)
    val = images(8, seed=1)
    aug = "flip=horizontal,rotate=0.1"
    histories = {}
    for copies in (0, 2):
        model = tiny_model(augmentation=transferkit.get_augmentation(aug))
        path = tmp_path / f"best{copies}.weights.h5"
        tuner = FineTuner([Phase(2, 1e-2, "none", name="head")], batch_size=8, seed=0,
                          augmented_copies=copies, checkpoint=path, cache=tmp_path / "cache",
                          verbose=2).fit(model, x, y, validation_data=val)
        histories[copies] = tuner.history_
        other = tiny_model(seed=5, augmentation=transferkit.get_augmentation(aug))
        other.load_weights(path)  # the full model's best weights
        assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(other)))
    log = capsys.readouterr().out
    assert ("Phase 1/1 (head): augmentation on: plain path (augmented_copies=K would cache K "
            "augmented copies).") in log
    assert "training the head on 2 augmented copies of the features in temporary files" in log
    assert histories[2].keys() == histories[0].keys()
    assert histories[2]["phase"] == histories[0]["phase"] == [0, 0]
    # Only the validation features are a cache entry; the random copies are gone.
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npy"]


def test_a_k_phase_leaves_the_backbone_bit_identical():
    model = tiny_model(augmentation=transferkit.get_augmentation("rotate=0.2"))
    start = snapshot(model.get_layer("backbone"))
    FineTuner([Phase(2, 1e-2, "none")], batch_size=8, seed=0, augmented_copies=2,
              verbose=0).fit(model, *images(16))
    assert all(np.array_equal(a, b) for a, b in zip(start, snapshot(model.get_layer("backbone"))))


@pytest.mark.parametrize("copies", [-1, 1.5, True, "2"])
def test_augmented_copies_is_checked(copies):
    with pytest.raises(TransferkitError, match="augmented_copies must be an int >= 0"):
        FineTuner([Phase(1, 1e-3)], augmented_copies=copies, verbose=0).fit(
            tiny_model(), *images(8))


# Given features (FineTuner.fit(..., features=...)).


def given_features(model, x, val):
    extractor = feature_extractor(model)
    return extract_features(extractor, x), extract_features(extractor, val[0])


def test_given_features_train_the_head_like_the_cache(monkeypatch, capsys):
    x, y = images(30)
    val = images(10, seed=1)
    results = []
    for given in (False, True):
        model = tiny_model()
        features = given_features(model, x, val) if given else None
        if given:
            def refuse(*args, **kwargs):
                raise AssertionError("extracted features although they were given")
            monkeypatch.setattr(recipe, "extract_features", refuse)
        tuner = FineTuner([Phase(3, 1e-2, "none", name="head")], batch_size=8, patience=None,
                          seed=0, verbose=2).fit(model, x, y, validation_data=val,
                                                 features=features)
        results.append((snapshot(model.get_layer("head")), tuner.history_))
    assert "training the head on the given features (16 values per sample)" in \
        capsys.readouterr().out
    (cached, cached_history), (given, given_history) = results
    for a, b in zip(cached, given):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert given_history.keys() == cached_history.keys()
    for key in cached_history:
        np.testing.assert_allclose(given_history[key], cached_history[key], rtol=1e-5, atol=1e-6)


def test_given_features_are_checked():
    x, y = images(12)
    val = images(6, seed=1)
    model = tiny_model()
    train, val_features = given_features(model, x, val)
    tuner = FineTuner([Phase(1, 1e-2, "none")], batch_size=4, verbose=0)
    cases = {
        "train_features has 11 rows for 12 inputs": (train[:11], val_features),
        "val_features has 5 rows for 6 inputs": (train, val_features[:5]),
        r"train_features has shape \(8,\) per sample but the head takes \(16,\)":
            (train[:, :8], val_features),
        "val_features must be given exactly when validation_data is": (train, None),
        "features must be a pair": (train,),
    }
    for message, features in cases.items():
        with pytest.raises(TransferkitError, match=message):
            tuner.fit(model, x, y, validation_data=val, features=features)
    with pytest.raises(TransferkitError, match="val_features must be given exactly"):
        tuner.fit(model, x, y, features=(train, val_features))
    with pytest.raises(TransferkitError, match="needs the cache on"):
        FineTuner([Phase(1, 1e-2, "none")], cache=False, verbose=0).fit(
            model, x, y, validation_data=val, features=(train, val_features))


def test_given_features_are_not_used_once_the_backbone_has_trained(monkeypatch, capsys):
    x, y = images(16)
    val = images(8, seed=1)
    model = tiny_model()
    features = given_features(model, x, val)
    calls = spy(monkeypatch, "extract_features")
    phases = [Phase(1, 1e-2, "none", name="head"), Phase(1, 1e-2, "all", name="all"),
              Phase(1, 1e-2, "none", name="again")]
    FineTuner(phases, batch_size=8, patience=None, seed=0, verbose=2).fit(
        model, x, y, validation_data=val, features=features)
    log = capsys.readouterr().out
    assert "Phase 1/3 (head): backbone frozen, no augmentation: training the head on the " \
        "given features" in log
    assert "Phase 3/3 (again): backbone frozen, no augmentation: training the head on " \
        "cached features in memory (16 values per sample); the given features are stale" in log
    # Phase 3 extracted afresh, from the trained backbone: train and validation.
    assert len(calls) == 2
    extractor = feature_extractor(model)
    trained = extract_features(extractor, x)
    assert not np.allclose(trained, features[0])
    np.testing.assert_allclose(calls[0][1], trained, rtol=1e-6, atol=1e-6)
