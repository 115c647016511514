"""The backbone catalogue: entries checked against Keras, preprocessing, weights offline.

No test downloads anything. Keras' downloader is replaced either by a
recorder (to learn which file a family asks for) or by one that fails the way
`urlretrieve` fails offline; the weights Keras should find in its cache are
written by the test, under the exact file name, into a temporary KERAS_HOME.
"""

import os
import urllib.error

import h5py
import keras
import numpy as np
import pytest
from conftest import snapshot
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

import transferkit
from transferkit.backbones import get_backbone_config, load_backbone, weights_available
from transferkit.backbones.preprocessing import PREPROCESSING
from transferkit.cli import main
from transferkit.errors import TransferkitError

ASKED_FOR = [
    "vgg16", "vgg19", "resnet50", "resnet50_v2", "inception_v3", "xception", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "densenet121", "efficientnet_b0",
    "efficientnet_v2_b0", "convnext_tiny", "efficientnet_lite0",
]
KERAS_FAMILIES = ASKED_FOR[:-1]


def small_shape(name):
    size = get_backbone_config(name).min_size
    return (max(size, 32), max(size, 32), 3)


@pytest.fixture(scope="module")
def imagenet_builds():
    """{name: (backbone, file name Keras asked for)}, built with weights="imagenet".

    Keras' `get_file` is replaced by a recorder and `load_weights` by a no-op,
    so each family runs its real ImageNet code path (file name, hash lookup,
    load call) on a small input, without network or weights.
    """
    asked = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(file_utils, "get_file", lambda fname, *a, **k: asked.setdefault("file", fname))
        mp.setattr(keras.Model, "load_weights", lambda self, *a, **k: None)
        builds = {}
        for name in KERAS_FAMILIES:
            asked.clear()
            model = load_backbone(name, weights="imagenet", input_shape=small_shape(name))
            builds[name] = (model, asked.get("file"))
    builds["efficientnet_lite0"] = (
        load_backbone("efficientnet_lite0", weights=None, input_shape=(32, 32, 3)), None
    )
    return builds


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fresh Keras cache, offline: any download attempt fails at once."""
    # Keras reads KERAS_HOME once, at import, into this module global;
    # `keras_home()` and so `get_file` read it per call.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    os.makedirs(tmp_path / "keras_home")
    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return tmp_path / "keras_home" / "models", attempts


def test_catalogue_has_every_family_asked_for():
    names = [row.name for row in transferkit.list_backbones()]
    assert set(ASKED_FOR) <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", KERAS_FAMILIES)
def test_recorded_weights_file_is_the_one_keras_asks_for(name, imagenet_builds):
    _, asked = imagenet_builds[name]
    config = get_backbone_config(name)
    assert asked == config.weights_filename(small_shape(name))


@pytest.mark.parametrize("name", ASKED_FOR)
def test_recorded_parameter_count_and_blocks_match_the_built_model(name, imagenet_builds):
    model, _ = imagenet_builds[name]
    config = get_backbone_config(name)
    assert model.name == name
    assert model.count_params() == config.parameters
    # Every block names some layers, and the blocks come in model order.
    names = [layer.name for layer in model.layers]
    firsts = []
    for index in range(len(config.blocks)):
        members = [i for i, n in enumerate(names) if config.block_of(n) == index]
        assert members, f"block {config.blocks[index]!r} matches no layer"
        firsts.append(members[0])
    assert firsts == sorted(firsts)
    assert config.block_of(names[-1]) in (None, len(config.blocks) - 1)


def test_block_prefixes_do_not_swallow_longer_numbers():
    assert get_backbone_config("xception").block_of("block10_sepconv1") == 9
    assert get_backbone_config("mobilenet_v2").block_of("block_1_expand") == 0
    assert get_backbone_config("mobilenet_v2").block_of("block_16_project") == 15
    small = get_backbone_config("mobilenet_v3_small")
    assert small.block_of("expanded_conv_depthwise") == 0
    assert small.block_of("expanded_conv_10_add") == 10
    assert get_backbone_config("inception_v3").block_of("mixed9_1") is None


@pytest.mark.parametrize(
    "name", [n for n in KERAS_FAMILIES if get_backbone_config(n).preprocessing != "inside"]
)
def test_in_model_preprocessing_equals_the_family_preprocess_input(name, imagenet_builds):
    model, _ = imagenet_builds[name]
    config = get_backbone_config(name)
    shape = small_shape(name)
    images = np.random.default_rng(0).uniform(0, 255, (2,) + shape).astype("float32")
    preprocess = keras.Model(model.inputs[0], model.get_layer(PREPROCESSING).output)

    got = keras.ops.convert_to_numpy(preprocess(images))
    expected = config.preprocess_input(images.copy())  # it works in place

    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=2e-5)
    assert not np.allclose(got, images)  # it did something


@pytest.mark.parametrize(
    "name", [n for n in KERAS_FAMILIES if get_backbone_config(n).preprocessing == "inside"]
)
def test_inside_families_take_raw_pixels(name):
    # Their preprocess_input is the identity: the model rescales itself.
    images = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    assert np.array_equal(get_backbone_config(name).preprocess_input(images.copy()), images)


def test_caffe_backbone_saves_and_reloads_in_safe_mode(imagenet_builds, tmp_path):
    model, _ = imagenet_builds["vgg16"]
    path = tmp_path / "vgg16.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_imagenet_weights_load_offline_from_the_keras_cache(keras_home):
    models_dir, attempts = keras_home
    shape = (32, 32, 3)
    filename = get_backbone_config("mobilenet_v2").weights_filename(shape)
    assert filename == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert transferkit.keras_models_dir() == str(models_dir)
    assert not weights_available("mobilenet_v2", shape)
    # MobileNetV2's download has no file_hash, so Keras takes any file of the
    # right name. Written here as Keras 2 wrote the published files.
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=shape)
    os.makedirs(models_dir)
    with h5py.File(models_dir / filename, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    assert weights_available("mobilenet_v2", shape)
    assert {r.name: r.weights_available for r in transferkit.list_backbones()}["mobilenet_v2"]

    backbone = load_backbone("mobilenet_v2", weights="imagenet", input_shape=shape)

    assert attempts == []
    expected = snapshot(reference)
    got = snapshot(backbone)
    assert len(got) == len(expected) > 100
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_missing_imagenet_weights_offline_say_which_file_goes_where(keras_home):
    models_dir, attempts = keras_home
    filename = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    with pytest.raises(TransferkitError) as error:
        load_backbone("mobilenet_v2", weights="imagenet", input_shape=(96, 96, 3))
    message = str(error.value)
    assert len(attempts) == 1 and attempts[0].endswith(filename)
    assert "\n" not in message
    assert filename in message and str(models_dir) in message
    assert "Temporary failure in name resolution" in message
    assert "weights=None" in message
    assert not (models_dir / filename).exists()


def test_weights_path_loads_a_file_saved_from_the_same_backbone(imagenet_builds, tmp_path):
    # MobileNetV3's download checks an md5 file_hash: a hand-made file under
    # its cache name fails the check, and Keras tries to download again (and
    # deletes the file when that fails). A weights path skips the cache.
    source, _ = imagenet_builds["mobilenet_v3_small"]
    path = tmp_path / "mobilenet_v3_small.weights.h5"
    source.save_weights(path)
    loaded = load_backbone("mobilenet_v3_small", weights=str(path), input_shape=(32, 32, 3))
    expected = snapshot(source)
    assert all(np.array_equal(a, b) for a, b in zip(expected, snapshot(loaded)))
    fresh = load_backbone("mobilenet_v3_small", weights=None, input_shape=(32, 32, 3))
    assert not all(np.array_equal(a, b) for a, b in zip(expected, snapshot(fresh)))


def test_a_saved_model_cut_at_a_layer(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    features = keras.layers.Conv2D(6, 3, name="features")(x)
    outputs = keras.layers.Dense(2, name="old_head")(keras.layers.Flatten(name="flat")(features))
    path = tmp_path / "model.keras"
    keras.Model(inputs, outputs).save(path)

    trunk = load_backbone(str(path), cut_at="features")

    images = np.random.default_rng(2).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    full = keras.saving.load_model(path)
    expected = keras.Model(full.inputs[0], full.get_layer("features").output)(images)
    assert trunk.output.shape == (None, 12, 12, 6)
    np.testing.assert_allclose(trunk(images), expected, rtol=1e-6)

    with pytest.raises(TransferkitError, match=r"no layer 'featurez' \(did you mean 'features'\?\).*flat"):
        load_backbone(str(path), cut_at="featurez")


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: load_backbone("resnet5"), "did you mean 'resnet50'"),
        (lambda: load_backbone("resnet50", weights=None, input_shape=(16, 16, 3)),
         "at least 32x32 pixels"),
        (lambda: load_backbone("inception_v3", weights=None, input_shape=(64, 64, 3)),
         "at least 75x75 pixels"),
        (lambda: load_backbone("mobilenet_v2", weights=None, input_shape=(32, 32, 1)),
         "RGB images (3 channels)"),
        (lambda: load_backbone("vgg16", weights="missing.weights.h5"), "No such weights file"),
        (lambda: load_backbone("no/such/model.keras"), "No such file"),
    ],
)
def test_mistakes_are_one_line_errors(call, words):
    with pytest.raises(TransferkitError) as error:
        call()
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_names_ignore_case_and_dashes():
    assert get_backbone_config("ResNet50").name == "resnet50"
    assert get_backbone_config("mobilenet-v2").name == "mobilenet_v2"


def test_cli_lists_the_catalogue(capsys):
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["backbone", "parameters", "input", "weights"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert set(ASKED_FOR) <= set(rows)
    assert rows["resnet50"][:2] == ["23.6M", "224x224"]
    assert rows["resnet50"][2] in ("here", "download")
    assert lines[-1] == f"Weights cache: {transferkit.keras_models_dir()}"


def test_cli_unknown_backbone_exits_2_with_a_suggestion(capsys):
    assert main(["backbones", "resnet50", "mobilenetv2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Unknown backbone 'mobilenetv2'; did you mean 'mobilenet_v2'?" in captured.err
