"""MixUp and CutMix on training batches, and balanced batch sampling (issue 18)."""

import json

import keras
import numpy as np
import pytest
from helpers import FAST, images, make_folder, run, tiny_model

from transferkit.data.augment import describe, get_augmentation, parse
from transferkit.data.buckets import LengthBuckets
from transferkit.data.mixing import MixedBatches, Mixing
from transferkit.data.sampling import balanced_indices, inverse_frequency
from transferkit.errors import TransferkitError
from transferkit.training import resume
from transferkit.training.config import TrainingConfig
from transferkit.training.features import AugmentedFeatures
from transferkit.training.metrics import MacroF1
from transferkit.training.recipe import FineTuner, Phase


def batch(n=8, size=6, seed=0):
    """`n` random float images, each its own class (one-hot), and weights 1..n."""
    x = np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return x, np.eye(n, dtype="float32"), np.arange(1, n + 1, dtype="float32")


def partners(labels):
    """`(lam, j)` per row of mixed one-hot `labels` (row i mixes i with j)."""
    pairs = []
    for i, row in enumerate(labels):
        others = row.copy()
        others[i] = 0
        j = int(others.argmax()) if others.max() > 0 else i
        pairs.append((row[i], j))
    return pairs


# --------------------------------------------------------------------------
# The spec


def test_mixup_and_cutmix_are_keys_of_the_one_spec_but_not_layers_of_the_model():
    spec = "flip=horizontal,mixup=0.2,cutmix=1"
    settings = describe(spec)
    assert (settings["flip"], settings["mixup"], settings["cutmix"]) == ("horizontal", 0.2, 1.0)
    assert parse(json.loads(json.dumps(settings))) == parse(spec)  # config.json round trip
    assert [layer.name for layer in get_augmentation(spec).layers] == ["flip"]
    assert get_augmentation("mixup=0.2") is None  # nothing left inside the model
    assert repr(parse(spec).mixing()) == "Mixing(mixup=0.2, cutmix=1, augmix=0)"
    assert parse("flip=vertical").mixing() is None


@pytest.mark.parametrize("spec, words", [
    ("mixup=2", "Invalid mixup='2': use a number in [0, 1] (MixUp"),
    ("cutmix=-0.5", "Invalid cutmix='-0.5': use a number in [0, 1] (CutMix"),
    ("mixup=much", "Invalid mixup='much'"),
    ("mix=0.2", "Unknown augmentation key(s) 'mix'"),
])
def test_bad_mixing_specs_are_one_line_errors(spec, words):
    with pytest.raises(TransferkitError) as error:
        parse(spec)
    assert words in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------
# One batch


def test_mixup_mixes_images_labels_and_weights_with_the_same_lambda():
    x, labels, weights = batch()
    mixed, soft, mixed_weights = Mixing(mixup=0.4)(x, labels, weights, seed=1)
    np.testing.assert_allclose(soft.sum(axis=1), 1, rtol=1e-6)
    assert any(0.01 < lam < 0.99 for lam, _ in partners(soft))  # really mixed
    for i, (lam, j) in enumerate(partners(soft)):
        np.testing.assert_allclose(mixed[i], lam * x[i] + (1 - lam) * x[j], atol=1e-3)
        np.testing.assert_allclose(mixed_weights[i], lam * weights[i] + (1 - lam) * weights[j],
                                   rtol=1e-5)


def test_cutmix_label_is_the_share_of_the_pasted_pixels():
    x, labels, weights = batch(size=16)
    mixed, soft, mixed_weights = Mixing(cutmix=1.0)(x, labels, weights, seed=2)
    assert any(0.05 < lam < 0.95 for lam, _ in partners(soft))
    for i, (lam, j) in enumerate(partners(soft)):
        pasted = np.all(mixed[i] == x[j], axis=-1) & ~np.all(mixed[i] == x[i], axis=-1)
        kept = np.all(mixed[i] == x[i], axis=-1)
        assert np.all(pasted | kept)  # every pixel is one image's or the other's
        if j != i:
            assert soft[i, j] == pytest.approx(pasted.mean(), abs=1e-6)
        assert lam == pytest.approx(kept.mean() if j != i else 1.0, abs=1e-6)
        assert mixed_weights[i] == pytest.approx(lam * weights[i] + (1 - lam) * weights[j])


def test_the_same_seed_gives_the_same_mix_and_both_on_use_each():
    x, labels, _ = batch()
    both = Mixing(mixup=0.2, cutmix=1.0)
    first, again = both(x, labels, seed=[5, 1]), both(x, labels, seed=[5, 1])
    assert all(np.array_equal(a, b) for a, b in zip(first[:2], again[:2]))
    # CutMix pastes whole pixels, MixUp blends every one: both happen over seeds.
    blended = {bool(np.any((both(x, labels, seed=s)[0] != x).all(axis=(1, 2, 3))))
               for s in range(12)}
    assert blended == {True, False}


def test_augmix_changes_images_only_repeatably_and_leaves_python_random_alone():
    import random

    x, labels, weights = batch(size=16)
    augmix = Mixing(augmix=0.5)
    random.seed(123)
    before = random.getstate()
    images, same_labels, same_weights = augmix(x, labels, weights, seed=[4, 2])
    assert random.getstate() == before  # its draws come from the batch's seed alone
    np.testing.assert_array_equal(same_labels, labels)
    np.testing.assert_array_equal(same_weights, weights)
    assert images.shape == x.shape and not np.allclose(images, x)
    assert images.min() >= 0 and images.max() <= 255
    np.testing.assert_array_equal(augmix(x, labels, weights, seed=[4, 2])[0], images)
    assert not np.array_equal(augmix(x, labels, weights, seed=[4, 3])[0], images)
    # Before MixUp: the pairs are mixed from the AugMix images, labels as MixUp's.
    _, soft, _ = Mixing(mixup=0.4, augmix=0.5)(x, labels, weights, seed=1)
    assert any(0.01 < lam < 0.99 for lam, _ in partners(soft))
    assert repr(parse("augmix=0.3").mixing()) == "Mixing(mixup=0, cutmix=0, augmix=0.3)"
    assert get_augmentation("augmix=0.3") is None  # not a layer of the model


def test_categorical_cross_entropy_on_soft_labels_is_the_numpy_one():
    x, labels, weights = batch()
    _, soft, mixed_weights = Mixing(mixup=0.4)(x, labels, weights, seed=1)
    probs = np.random.default_rng(3).dirichlet(np.ones(8), size=8).astype("float32")
    # What FineTuner(mixing=...) compiles ("categorical_crossentropy"), reduced
    # as compile reduces: the weighted sum over the batch size.
    value = keras.losses.CategoricalCrossentropy()(soft, probs, sample_weight=mixed_weights)
    expected = -(soft * np.log(probs)).sum(axis=1)
    assert float(value) == pytest.approx((mixed_weights * expected).sum() / 8, rel=1e-5)


def test_macro_f1_is_the_same_on_one_hot_and_class_index_targets():
    y = np.array([0, 1, 2, 2, 1, 0])
    scores = np.random.default_rng(0).dirichlet(np.ones(3), size=6).astype("float32")
    sparse, one_hot = MacroF1(), MacroF1()
    sparse.update_state(y, scores)
    one_hot.update_state(np.eye(3, dtype="float32")[y], scores)
    assert float(one_hot.result()) == pytest.approx(float(sparse.result()))


# --------------------------------------------------------------------------
# Batches by index: seeded, resumable


def mixed_batches(seed=0, balanced=True):
    x, y = images(n=20)
    data = AugmentedFeatures([x], y, sample_weight=np.linspace(1, 2, 20).astype("float32"),
                             batch_size=6, seed=[seed, 0], balanced=balanced)
    return MixedBatches(data, Mixing(mixup=0.3, cutmix=1.0), 3, seed=[seed, 0])


def test_batch_i_depends_on_its_index_and_the_seed_alone():
    in_order = [mixed_batches()[i] for i in range(8)]
    fresh = mixed_batches()
    backwards = {i: fresh[i] for i in reversed(range(8))}
    for i, served in enumerate(in_order):
        assert len(served) == 3 and served[1].shape[1] == 3
        assert all(np.array_equal(a, b) for a, b in zip(served, backwards[i]))
    other = mixed_batches(seed=1)[0]
    assert not np.array_equal(other[0], in_order[0][0])


def test_a_resumed_phase_serves_the_uninterrupted_batches(tmp_path):
    mixed = mixed_batches()
    partial = resume.PartialRun(tmp_path, {}, seed=0)
    data = {"x": mixed, "y": None, "batch_size": None, "sample_weight": None}
    from_epoch_2 = partial.data(data, 0, 2)["x"]
    steps = mixed.steps_per_epoch
    for i in range(steps):
        assert all(np.array_equal(a, b) for a, b in zip(from_epoch_2[i], mixed[2 * steps + i]))


# --------------------------------------------------------------------------
# Balanced sampling


def test_balanced_draws_make_every_class_about_equally_frequent():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    p = inverse_frequency(labels)
    assert p.sum() == pytest.approx(1) and p[-1] == pytest.approx(1 / (3 * 5))
    data = AugmentedFeatures([np.zeros((100, 1))], labels, batch_size=10, seed=7, balanced=True)
    drawn = np.concatenate([data[i][1] for i in range(60 * data.steps_per_epoch)])
    # 6,000 draws: a proportion's standard deviation is 0.006; allow 0.03.
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [1 / 3] * 3, atol=0.03)
    again = AugmentedFeatures([np.zeros((100, 1))], labels, batch_size=10, seed=7,
                              balanced=True)
    assert np.array_equal(again.order(5), data.order(5))
    assert not np.array_equal(again.order(5), data.order(6))
    rng = np.random.default_rng(0)
    assert len(balanced_indices(labels, rng)) == 100


def test_length_buckets_draw_by_class_too():
    ids = np.ones((40, 8), np.int32)
    labels = np.array([0] * 36 + [1] * 4)
    data = LengthBuckets(ids, labels, batch_size=8, seed=0, balanced=True)
    drawn = np.concatenate([data[i][1] for i in range(50 * data.steps_per_epoch)])
    assert abs(drawn.mean() - 0.5) < 0.05
    with pytest.raises(TransferkitError, match="class indices"):
        AugmentedFeatures([np.zeros((2, 1))], np.array([0.5, 1.0]), balanced=True)


# --------------------------------------------------------------------------
# Training


def test_fine_tuner_trains_on_mixed_batches_through_the_frozen_backbone(capsys):
    x, y = images(n=24)
    model = tiny_model()
    tuner = FineTuner([Phase(2, 1e-3, "none"), Phase(1, 1e-4, "all")], batch_size=8, seed=0,
                      verbose=1, mixing=Mixing(mixup=0.2, cutmix=1.0), monitor="val_macro_f1")
    tuner.fit(model, x, y, validation_data=(x[:8], y[:8]), sample_weight=np.ones(24))
    assert len(tuner.history_["loss"]) == 3 and model.loss == "categorical_crossentropy"
    assert np.isfinite(tuner.history_["val_loss"]).all()
    assert "mixup/cutmix/augmix on (features of mixed images are not mixed features): plain path" \
        in capsys.readouterr().out
    # Validation labels one-hot: the categorical loss equals the sparse one
    # (of the best epoch's weights, which the model ends with).
    probs = model.predict(x[:8], verbose=0)
    sparse = keras.losses.sparse_categorical_crossentropy(y[:8], probs)
    assert tuner.history_["val_loss"][tuner.best_epoch_] == pytest.approx(
        float(np.mean(keras.ops.convert_to_numpy(sparse))), rel=1e-4)


def test_fine_tuner_trains_on_balanced_batches_of_cached_features(capsys):
    x, y = images(n=24)
    model = tiny_model()
    tuner = FineTuner([Phase(2, 1e-3, "none")], batch_size=8, seed=0, verbose=1, balanced=True)
    tuner.fit(model, x, y, validation_data=(x[:8], y[:8]))
    assert len(tuner.history_["loss"]) == 2
    assert "training the head on cached features" in capsys.readouterr().out


def test_mixing_refuses_heads_and_inputs_it_cannot_serve():
    x, y = images(n=8)
    sigmoid = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(TransferkitError, match="needs a softmax head, not 'sigmoid'"):
        FineTuner(mixing=Mixing(mixup=0.2), verbose=0).fit(sigmoid, x, y)
    with pytest.raises(TransferkitError, match="mixing: x must be images"):
        FineTuner(mixing=Mixing(mixup=0.2), verbose=0).fit(tiny_model(), np.ones((8, 5), int), y)
    served = AugmentedFeatures([x], y, batch_size=4)
    with pytest.raises(TransferkitError, match="balanced: x must be .* not a dataset"):
        FineTuner(balanced=True, verbose=0).fit(tiny_model(), served)


@pytest.mark.parametrize("options, words", [
    ({"head": "logreg", "augment": "mixup=0.2"},
     "augment mixup=0.2: for trained heads; head='logreg'"),
    ({"head": "linear-svm", "balanced_batches": True},
     "balanced_batches: for trained heads; head='linear-svm'"),
    ({"balanced_batches": True, "class_weight": "balanced"},
     "balanced_batches and class_weight both correct for skewed classes"),
])
def test_config_refusals_are_one_line(options, words):
    with pytest.raises(TransferkitError) as error:
        TrainingConfig("mobilenet_v3_small", weights=None, **options)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_train_with_mixup_and_balanced_batches_records_both(tmp_path):
    data = make_folder(tmp_path / "data", n=6)
    out = tmp_path / "run"
    options = [o for o in FAST if o != "--no-augment"] + ["--epochs", "1,0"]
    assert run("train", data, "--out", out, *options, "--head", "softmax", "--augment",
               "flip=horizontal,mixup=0.2,cutmix=1,augmix=0.3", "--balanced-batches", "--log",
               "none") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["augmentation"]["mixup"] == 0.2 and config["augmentation"]["cutmix"] == 1.0
    assert config["augmentation"]["augmix"] == 0.3
    assert config["training"]["balanced_batches"] is True
