"""Your own model as the backbone (`--backbone PATH`, seed 003): run folders and .keras files."""

import hashlib
import json

import keras
import numpy as np
import pytest
from helpers import FAST, make_folder, run

from transferkit.backbones.registry import get_backbone_config
from transferkit.backbones.source import resolve_backbone
from transferkit.errors import TransferkitError
from transferkit.evaluation.inference import load_run
from transferkit.training.config import TrainingConfig

# FAST without its backbone: the tests give their own.
RECIPE = [o for i, o in enumerate(FAST) if o != "--backbone" and FAST[i - 1] != "--backbone"
          and o not in ("--weights", "none")]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model_a(tmp_path_factory):
    """A transferkit run (model A) on blue/red images, and a second folder for task B."""
    root = tmp_path_factory.mktemp("reuse")
    make_folder(root / "a", n=6)
    make_folder(root / "b", n=6, seed=1, classes=("x", "y", "z"))
    assert run("train", root / "a", "--out", root / "run_a", *FAST, "--head", "softmax",
               "--quiet") == 0
    return root


@pytest.fixture(scope="module")
def plain_keras(tmp_path_factory):
    """A plain Keras classifier saved as .keras: raw pixels in, its own rescaling inside."""
    path = tmp_path_factory.mktemp("plain") / "cnn.keras"
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="out")(x),
                name="cnn").save(path)
    return path


def test_a_run_of_train_becomes_the_backbone_of_another_and_stays_unchanged(model_a, capsys):
    root = model_a
    before = sha256(root / "run_a" / "model.keras")
    capsys.readouterr()
    assert run("train", root / "b", "--out", root / "run_b", "--backbone", root / "run_a",
               "--head", "softmax", *RECIPE) == 0
    out = capsys.readouterr().out
    assert "cut at 'backbone' (auto)" in out and "blocks are mobilenet_v3_small's" in out
    assert sha256(root / "run_a" / "model.keras") == before  # A's file is only read
    config = json.loads((root / "run_b" / "config.json").read_text())
    source = config["backbone_source"]
    assert source["sha256"] == before and source["cut_at"] == "backbone"
    assert source["kind"] == "run" and config["backbone"] == "mobilenet_v3_small"
    assert config["training"]["backbone"] == str(root / "run_a")
    b = load_run(root / "run_b")
    assert b.class_names == ["x", "y", "z"] and b.model.outputs[0].shape[-1] == 3
    # B's backbone is A's (its own copy): the same layers, A's preprocessing first.
    a = load_run(root / "run_a").model
    assert [w.name for w in b.model.get_layer("backbone").layers[:3]] == \
        [w.name for w in a.get_layer("backbone").layers[:3]]
    assert run("predict", root / "run_b", root / "b" / "x" / "x0.jpg") == 0
    assert capsys.readouterr().out.split()[1] in ("x", "y", "z")


def test_a_reused_run_starts_from_a_and_from_scratch_does_not(model_a):
    root = model_a
    config = TrainingConfig(str(root / "run_a"), epochs=(1, 0))
    source = config.backbone_config
    a = load_run(root / "run_a").model.get_layer("backbone")
    reused, fresh = source.load(), source.load(weights=None)
    for mine, theirs in zip(reused.weights, a.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    kernels = [(w, v) for w, v in zip(fresh.weights, a.weights) if "kernel" in w.path]
    assert kernels and not all(np.array_equal(w.numpy(), v.numpy()) for w, v in kernels)
    assert reused.weights[0] is not a.weights[0]  # read afresh: nothing shared


def test_blocks_plans_work_on_a_reused_catalogue_backbone(model_a):
    config = TrainingConfig(str(model_a / "run_a"), unfreeze="blocks:2")
    assert config.backbone_config.blocks == get_backbone_config("mobilenet_v3_small").blocks
    with pytest.raises(TransferkitError, match="blocks:99"):
        TrainingConfig(str(model_a / "run_a"), unfreeze="blocks:99")


def test_a_plain_keras_file_is_cut_before_its_output_skipping_dropout(plain_keras, tmp_path,
                                                                      capsys):
    source = resolve_backbone(str(plain_keras))
    assert source.cut_at == "hidden" and source.default_size == 32 and not source.blocks
    assert [layer.name for layer in source.load().layers][1] == "scale"  # preprocessing kept
    data = make_folder(tmp_path / "data", n=5)
    before = sha256(plain_keras)
    assert run("train", data, "--out", tmp_path / "run", "--backbone", plain_keras,
               "--head", "softmax", *RECIPE) == 0
    assert "cut at 'hidden' (auto)" in capsys.readouterr().out
    assert sha256(plain_keras) == before
    model = load_run(tmp_path / "run").model
    assert model.get_layer("backbone").outputs[0].shape[-1] == 16
    with pytest.raises(TransferkitError, match="cnn.keras has 0 blocks; use last:N"):
        TrainingConfig(str(plain_keras), unfreeze="blocks:1")
    assert TrainingConfig(str(plain_keras), cut_at="pool").backbone_config.cut_at == "pool"


@pytest.mark.parametrize("cut, message", [
    ("hiden", "has no layer 'hiden' (did you mean 'hidden'?)"),
    ("pixels", "its input, leaves no features"),
])
def test_a_bad_cut_is_one_line_before_any_image_is_read(plain_keras, tmp_path, capsys, cut,
                                                        message):
    data = make_folder(tmp_path / "data", n=3, corrupt=True)
    assert run("train", data, "--out", tmp_path / "run", "--backbone", plain_keras,
               "--cut-at", cut, *RECIPE) == 2
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Skipped" not in captured.err and "training images" not in captured.out
    assert not (tmp_path / "run").exists()


def test_a_cut_whose_output_is_no_feature_is_refused(tmp_path):
    path = tmp_path / "seq.keras"
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Reshape((64, 3), name="rows")(inputs)
    keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x))).save(path)
    with pytest.raises(TransferkitError, match="gives outputs of shape .* not features"):
        resolve_backbone(str(path), cut_at="rows")


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.keras", "does not exist"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "is not a .keras file"),
    (lambda p: p, "holds neither model.keras"),
    (lambda p: (p / "bad.keras").write_bytes(b"not a zip") and p / "bad.keras",
     "is not a Keras model file"),
])
def test_bad_backbone_paths_are_one_line(tmp_path, make, message):
    with pytest.raises(TransferkitError, match=message) as caught:
        TrainingConfig(str(make(tmp_path)))
    assert "\n" not in str(caught.value)


def test_cut_at_and_mixed_precision_need_a_model_of_your_own(plain_keras):
    with pytest.raises(TransferkitError, match="cut_at is for a backbone given by path"):
        TrainingConfig("mobilenet_v3_small", cut_at="conv")
    with pytest.raises(TransferkitError, match="keeps its own dtypes"):
        TrainingConfig(str(plain_keras), precision="mixed")
