import json

import keras
import numpy as np
import pytest

from transferkit import TransferkitError
from transferkit.data import Augmentation, get_augmentation
from transferkit.data.augment import describe, parse

# Keras layers only: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends

DEFAULT = {"flip": "horizontal", "shift": 0.1, "rotate": 0.05, "zoom": 0.1, "contrast": 0.1,
           "randaugment": 0.0, "erasing": 0.0, "mixup": 0.0, "cutmix": 0.0, "augmix": 0.0}


def images(n=4, size=32):
    """Smooth, non-symmetric float images in [0, 255], so every transform shows."""
    rows, cols = np.mgrid[0:size, 0:size].astype("float32")
    base = np.stack([rows * 255 / size, cols * 255 / size, (rows * cols) % 256], axis=-1)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)]).astype("float32")


def model_with(augment, size=32):
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, augment(inputs))


def to_numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def test_default_spec_builds_the_five_layers_in_a_sequential_named_augment():
    augment = get_augmentation(True, seed=0)
    assert isinstance(augment, keras.Sequential) and augment.name == "augment"
    layers = {layer.name: layer.get_config() for layer in augment.layers}
    assert list(layers) == ["flip", "shift", "rotate", "zoom", "contrast"]
    assert layers["flip"]["mode"] == "horizontal"
    assert layers["shift"]["height_factor"] == layers["shift"]["width_factor"] == 0.1
    assert tuple(layers["rotate"]["factor"]) == (-0.05, 0.05)
    assert layers["zoom"]["height_factor"] == 0.1 and layers["zoom"]["width_factor"] is None
    assert tuple(layers["contrast"]["factor"]) == (0.1, 0.1)
    assert tuple(layers["contrast"]["value_range"]) == (0, 255)
    assert [layer.get_config()["seed"] for layer in augment.layers] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("spec", [True, "default", " DEFAULT ", Augmentation.default(), DEFAULT,
                                  "flip=horizontal,shift=0.1,rotate=0.05,zoom=0.1,contrast=0.1"])
def test_every_way_of_writing_the_default_means_the_same(spec):
    assert describe(spec) == DEFAULT


@pytest.mark.parametrize("spec", [False, None, "none", "None", {}, Augmentation(),
                                  "flip=none,rotate=0", {"flip": None, "zoom": 0}])
def test_off_specs_give_no_layers(spec):
    assert get_augmentation(spec) is None
    assert describe(spec) is None


def test_a_string_or_dict_turns_on_only_what_it_names():
    spec = " Flip = vertical , rotate=0.1,shift=0.2 "
    assert describe(spec) == {"flip": "vertical", "shift": 0.2, "rotate": 0.1,
                              "zoom": 0.0, "contrast": 0.0, "randaugment": 0.0,
                              "erasing": 0.0, "mixup": 0.0, "cutmix": 0.0, "augmix": 0.0}
    assert [layer.name for layer in get_augmentation(spec).layers] == ["flip", "shift", "rotate"]
    assert parse({"zoom": "0.2"}) == Augmentation(zoom=0.2)


def test_describe_is_json_and_round_trips():
    spec = "flip=horizontal_and_vertical,zoom=0.2,contrast=0.3"
    settings = json.loads(json.dumps(describe(spec)))
    assert parse(settings) == parse(spec)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("rotation=0.1", "Unknown augmentation key(s) 'rotation'"),
        ({"blur": 1, "rotate": 0.1}, "Unknown augmentation key(s) 'blur'"),
        ("rotate", "key=value pairs"),
        ("rotate=", "key=value pairs"),
        ("flip=horizontal,,zoom=0.1", "key=value pairs"),
        ("", "key=value pairs"),
        ("rotate=0.1,rotate=0.2", "sets 'rotate' twice"),
        ("rotate=abc", "Invalid rotate='abc': use a number in [0, 0.5]"),
        ("rotate=0.6", "Invalid rotate='0.6'"),
        ("shift=1", "Invalid shift='1': use a number in [0, 1)"),
        ("zoom=-0.1", "Invalid zoom='-0.1'"),
        ("contrast=nan", "Invalid contrast='nan'"),
        ({"zoom": True}, "Invalid zoom=True"),
        ({"shift": float("inf")}, "Invalid shift=inf"),
        ("randaugment=2", "Invalid randaugment='2': use a number in [0, 1]"),
        ("erasing=-1", "Invalid erasing='-1'"),
        ("augmix=1.5", "Invalid augmix='1.5': use a number in [0, 1]"),
        ("flip=sideways", "Invalid flip 'sideways': use one of horizontal, vertical"),
        (0.1, "Invalid augmentation 0.1"),
        (["flip"], "Invalid augmentation ['flip']"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, words):
    with pytest.raises(TransferkitError) as error:
        get_augmentation(spec)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(TransferkitError) as error:
        get_augmentation("brightness=0.2")
    for key in ("flip (horizontal", "shift", "rotate", "zoom", "contrast"):
        assert key in str(error.value)


def test_bad_seed_is_an_error():
    with pytest.raises(TransferkitError, match="Invalid seed '1'"):
        get_augmentation(True, seed="1")


def test_inference_passes_images_through_unchanged():
    model = model_with(get_augmentation(True, seed=0))
    x = images()
    assert np.array_equal(to_numpy(model(x, training=False)), x)
    assert np.array_equal(model.predict(x, verbose=0), x)


def test_training_changes_images_and_keeps_them_in_range():
    model = model_with(get_augmentation(True, seed=0))
    x = images()
    out = to_numpy(model(x, training=True))
    assert out.shape == x.shape
    assert not np.allclose(out, x)
    assert out.min() >= 0 and out.max() <= 255


@pytest.mark.parametrize("spec", ["flip=horizontal", "shift=0.2", "rotate=0.1", "zoom=0.3",
                                  "contrast=0.5", "randaugment=0.5", "erasing=1"])
def test_each_layer_alone_acts_in_training_only(spec):
    augment = get_augmentation(spec, seed=3)
    x = images(n=8)
    assert np.array_equal(to_numpy(augment(x, training=False)), x)
    assert not np.allclose(to_numpy(augment(x, training=True)), x)


def test_horizontal_flip_mirrors_columns():
    x = images(n=16)
    out = to_numpy(get_augmentation("flip=horizontal", seed=0)(x, training=True))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    unchanged = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or u for f, u in zip(flipped, unchanged)) and any(flipped)


def test_contrast_goes_both_ways():
    x = images(n=32)
    out = to_numpy(get_augmentation("contrast=0.5", seed=0)(x, training=True))
    ratio = out.std(axis=(1, 2, 3)) / x.std(axis=(1, 2, 3))
    assert ratio.min() < 0.9 and ratio.max() > 1.1


@pytest.mark.parametrize("spec", [True, "randaugment=0.5,erasing=0.5"])
def test_the_same_seed_repeats_the_randomness(spec):
    x = images()
    first = to_numpy(get_augmentation(spec, seed=5)(x, training=True))
    again = to_numpy(get_augmentation(spec, seed=5)(x, training=True))
    assert np.allclose(first, again)
    assert not np.allclose(to_numpy(get_augmentation(spec, seed=6)(x, training=True)), first)


def test_keras_policies_keep_images_in_range_and_erasing_comes_last():
    augment = get_augmentation("flip=horizontal,erasing=1,randaugment=0.5", seed=0)
    assert [layer.name for layer in augment.layers] == ["flip", "randaugment", "erasing"]
    out = to_numpy(augment(images(n=8), training=True))
    assert out.min() >= 0 and out.max() <= 255


def test_a_model_with_augmentation_trains_and_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((32, 32, 3))
    features = get_augmentation(True, seed=0)(inputs)
    features = keras.layers.Rescaling(1 / 255)(features)
    features = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax")(features)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = images(n=8), np.array([0, 1] * 4)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)

    path = tmp_path / "augmented.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    augment = loaded.get_layer("augment")
    assert [layer.name for layer in augment.layers] == ["flip", "shift", "rotate", "zoom",
                                                        "contrast"]
    assert tuple(augment.get_layer("contrast").get_config()["value_range"]) == (0, 255)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
