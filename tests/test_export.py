"""`transferkit export`: each format gives the Keras model's outputs in its own runtime.

The run is made by hand (a tiny backbone and head fitted in a second on
blue-or-red images, saved as `train` saves it), so that every format
converts in seconds.
"""

import importlib.util
import json
import os
import pathlib
import re
import shutil

import keras
import numpy as np
import pytest

import transferkit
from helpers import make_folder, run, tiny_backbone
from transferkit.data.images import load_images, scan_image_folder
from transferkit.errors import TransferkitError
from transferkit.saving import file_sha256
from transferkit.workflows import export as export_module
from transferkit.workflows.export import MAX_DIFFERENCE, export, run_exported

ONNX = importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("onnxruntime")
NEEDS_ONNX = pytest.mark.skipif(not ONNX, reason='onnx export needs tf2onnx and onnxruntime: '
                                'pip install "transferkit[export]"')


def _save_run(out, model, data, val, classes, val_split=0.2):
    """A run folder as `transferkit train` writes it: model.keras and config.json."""
    out.mkdir()
    model.save(out / "model.keras")
    config = {"command": "train", "class_names": list(classes), "image_size": [12, 12],
              "crop": None, "backbone": "tiny", "outputs": "probabilities",
              "arguments": {"data_dir": str(data), "val": None if val is None else str(val),
                            "val_split": val_split, "seed": 0, "strict": False},
              "model_sha256": file_sha256(out / "model.keras")}
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`(run folder, data, val)`: a two-class run that tells blue from red images."""
    root = tmp_path_factory.mktemp("export")
    data = make_folder(root / "data", n=10)
    val = make_folder(root / "val", n=6, seed=1)
    keras.utils.set_random_seed(0)
    model = transferkit.build(tiny_backbone(), 2)
    folder = scan_image_folder(data)
    x = load_images(folder.files, 12, crop=None).astype("float32")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, np.asarray(folder.labels), epochs=30, batch_size=20, verbose=0)
    return _save_run(root / "run", model, data, val, folder.class_names), data, val


@pytest.fixture
def fresh_run(tiny_run, tmp_path):
    """A copy of the tiny run, to write exports into."""
    folder, data, val = tiny_run
    return shutil.copytree(folder, tmp_path / "run"), data, val


def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(".")]


@pytest.mark.parametrize("format", ["saved_model", "litert",
                                    pytest.param("onnx", marks=NEEDS_ONNX)])
def test_each_format_gives_the_keras_outputs_in_its_own_runtime(fresh_run, format):
    folder, _, val = fresh_run
    result = export(folder, format=format)
    assert result.path == str(folder / "export" / format)
    assert os.path.exists(result.artifact) and result.size > 0
    assert result.source == "validation images" and result.samples == 12
    assert result.same_class == 12 and result.largest_difference <= MAX_DIFFERENCE

    # Checked again here, independently of export's own check.
    model = transferkit.load_model(folder / "model.keras", compile=False)
    x = load_images(scan_image_folder(val).files, 12, crop=None).astype("float32")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(run_exported(format, result.artifact, x), expected,
                               atol=MAX_DIFFERENCE)
    record = json.loads((folder / "export" / format / "config.json").read_text())
    assert record["command"] == "export" and record["format"] == format
    assert record["input"]["shape"] == [None, 12, 12, 3]
    assert record["verification"]["same_class"] == 12
    assert not _leftovers(folder / "export")


def test_cli_prints_where_it_wrote_and_the_verification(fresh_run, capsys):
    folder, _, _ = fresh_run
    out = folder.parent / "served"
    assert run("export", folder, "--out", out) == 0
    printed = capsys.readouterr().out
    assert f"Wrote saved_model: {out} (" in printed
    assert "on 12 validation images: 12/12 same class, largest difference" in printed
    assert (out / "saved_model.pb").is_file()


def test_int8_reports_its_accuracy_against_float(fresh_run, capsys):
    folder, _, val = fresh_run
    assert run("export", folder, "--format", "litert", "--quantize", "int8") == 0
    printed = capsys.readouterr().out
    assert "/export/litert-int8/model.tflite" in printed
    line = next(l for l in printed.splitlines() if l.startswith("int8: accuracy"))
    record = json.loads((folder / "export" / "litert-int8" / "config.json").read_text())
    figures = record["verification"]
    # Float's accuracy is the Keras model's, as `transferkit evaluate` finds it.
    assert figures["float_accuracy"] == transferkit.evaluate(folder, val)["accuracy"]
    assert line == (f"int8: accuracy {figures['accuracy']:.4f} vs float "
                    f"{figures['float_accuracy']:.4f} on 12 validation images")
    assert figures["accuracy"] >= figures["float_accuracy"] - 0.05
    # Smaller than float even here, where the file is mostly its fixed overhead.
    assert figures["size"] < export(folder, format="litert").size


def test_float16_keeps_the_classes(fresh_run):
    folder, _, _ = fresh_run
    half = export(folder, format="litert", quantize="float16")
    assert half.same_class == half.samples == 12 and half.accuracy == half.float_accuracy
    assert half.path.endswith("litert-float16") and half.tolerance is None
    assert 0 < half.largest_difference < 1e-2


def test_without_its_data_a_run_is_checked_on_random_inputs(tiny_run, tmp_path):
    folder, _, _ = tiny_run
    moved = shutil.copytree(folder, tmp_path / "run")
    config = json.loads((moved / "config.json").read_text())
    config["arguments"].update(data_dir=str(tmp_path / "gone"), val=str(tmp_path / "gone-val"))
    (moved / "config.json").write_text(json.dumps(config))
    result = export(moved, tmp_path / "served")
    assert result.source == "random inputs" and result.samples == 32
    assert result.accuracy is None and result.largest_difference <= MAX_DIFFERENCE
    with pytest.raises(TransferkitError, match="int8 quantization calibrates on the run's "
                       "training images"):
        export(moved, tmp_path / "int8", format="litert", quantize="int8")
    assert not (tmp_path / "int8").exists()


def test_a_val_split_run_is_checked_on_its_validation_part(tiny_run, tmp_path):
    folder, data, _ = tiny_run
    split = _save_run(tmp_path / "run", transferkit.load_model(folder / "model.keras"), data,
                      None, ["blue", "red"], val_split=0.5)
    result = export(split, samples=7)
    assert result.source == "validation images" and result.samples == 7  # of 10


def test_a_class_added_to_the_validation_folder_leaves_accuracy_out(tiny_run, tmp_path):
    folder, _, _ = tiny_run
    val = make_folder(tmp_path / "val", n=3, classes=("blue", "green", "red"))
    moved = shutil.copytree(folder, tmp_path / "run")
    config = json.loads((moved / "config.json").read_text())
    config["arguments"]["val"] = str(val)
    (moved / "config.json").write_text(json.dumps(config))
    result = export(moved, format="litert", quantize="float16")
    assert result.samples == 9 and result.accuracy is None
    assert "accuracy" not in "\n".join(result.lines())


def test_a_mismatching_export_is_an_error_and_is_not_written(fresh_run, monkeypatch, capsys):
    folder, _, _ = fresh_run
    real = export_module.run_exported
    monkeypatch.setattr(export_module, "run_exported",
                        lambda *args, **kwargs: real(*args, **kwargs) + 1e-3)
    assert run("export", folder) == 2
    error = capsys.readouterr().err
    assert "does not match the Keras model: largest difference 0.001" in error
    assert "it was not written" in error and len(error.strip().splitlines()) == 1
    assert not (folder / "export").exists()


def test_a_quantized_export_that_changes_classes_is_an_error(fresh_run, monkeypatch):
    folder, _, _ = fresh_run
    real = export_module.run_exported
    monkeypatch.setattr(export_module, "run_exported",
                        lambda *args, **kwargs: real(*args, **kwargs)[:, ::-1])  # swapped
    with pytest.raises(TransferkitError, match=r"class for only 0/12 inputs \(at least 98%"):
        export(folder, format="litert", quantize="float16")
    assert not (folder / "export").exists()


def test_an_export_is_replaced_only_with_overwrite(fresh_run, capsys):
    folder, _, _ = fresh_run
    assert run("export", folder) == 0
    written = (folder / "export" / "saved_model" / "saved_model.pb").stat().st_mtime_ns
    assert run("export", folder) == 2
    assert "previous export run; choose another --out or pass --overwrite" in \
        capsys.readouterr().err
    assert run("export", folder, "--overwrite") == 0
    assert (folder / "export" / "saved_model" / "saved_model.pb").stat().st_mtime_ns != written


def test_an_existing_folder_that_is_not_an_export_is_never_replaced(fresh_run, capsys):
    folder, _, _ = fresh_run
    mine = folder.parent / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert run("export", folder, "--out", mine, *extra) == 2
        assert "choose another --out" in capsys.readouterr().err.lower()
    assert os.listdir(mine) == ["notes.txt"]
    # Nor the run folder itself: it holds the model.
    assert run("export", folder, "--out", folder, "--overwrite") == 2
    assert "holds the input" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--format", "pickle"], "Invalid value for format (--format): 'pickle'. Expected one of "
                             "saved_model, litert, onnx."),
    (["--format", "onnx", "--quantize", "int8"], "--quantize int8 does not apply to --format "
                                                 "onnx: --quantize float16|int8 works with "
                                                 "--format litert only"),
    (["--quantize", "float16"], "--quantize float16 does not apply to --format saved_model"),
    (["--format", "litert", "--quantize", "int4"], "Invalid value for quantize (--quantize): "
                                                   "'int4'. Expected float16 or int8"),
    (["--samples", "0"], "--samples must be at least 1"),
])
def test_bad_options_exit_2_and_write_nothing(fresh_run, capsys, argv, message):
    folder, _, _ = fresh_run
    assert run("export", folder, *argv) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (folder / "export").exists()


@pytest.mark.parametrize("keywords, message", [
    ({"samples": 2.5}, "samples must be an int >= 1, like 1000; got 2.5."),
    ({"seed": "0"}, "seed must be an int, like 0; got '0'."),
    ({"format": "litert", "quantize": "INT8"}, "Invalid value for quantize (--quantize): "
                                              "'INT8'."),
])
def test_bad_arguments_to_the_library_say_what_is_accepted(fresh_run, keywords, message):
    folder, _, _ = fresh_run
    with pytest.raises(TransferkitError, match=re.escape(message)):
        export(folder, **keywords)
    assert not (folder / "export").exists()


def test_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert run("export", tmp_path / "photos") == 2
    assert "is this a transferkit run folder?" in capsys.readouterr().err
    assert run("export", tmp_path / "missing") == 2
    assert "No such run folder" in capsys.readouterr().err
    assert os.listdir(tmp_path / "photos") == []


def test_a_text_run_is_not_quantized_to_int8(tmp_path, capsys):
    # Refused from config.json alone, before any model is read.
    (tmp_path / "reviews").mkdir()
    (tmp_path / "reviews" / "config.json").write_text(json.dumps(
        {"command": "train", "class_names": ["neg", "pos"], "max_length": 16,
         "backbone": "minilm_l6"}))
    assert run("export", tmp_path / "reviews", "--format", "litert", "--quantize", "int8") == 2
    assert "is a text run: int8 quantization is for image runs" in capsys.readouterr().err
    assert os.listdir(tmp_path / "reviews") == ["config.json"]


def test_a_missing_converter_names_the_extra(fresh_run, monkeypatch, capsys):
    folder, _, _ = fresh_run
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else find_spec(name, *a))
    assert run("export", folder, "--format", "onnx") == 2
    assert capsys.readouterr().err.strip() == (
        'transferkit: error: --format onnx needs tf2onnx, which is not installed: '
        'pip install "transferkit[export]".')
    assert not (folder / "export").exists()


def test_export_is_a_public_verb():
    assert transferkit.export is export and "export" in transferkit.__all__


@pytest.mark.slow
@pytest.mark.parametrize("format, quantize", [("saved_model", None), ("litert", "float16"),
                                              pytest.param("onnx", None, marks=NEEDS_ONNX)])
def test_a_text_run_exports_token_ids_in(keras_hub, tmp_path, format, quantize):
    # MiniLM with random weights (no download), its data gone: random token ids.
    backbone = transferkit.load_backbone("minilm_l6", weights=None, input_shape=(16,))
    folder = tmp_path / "reviews"
    folder.mkdir()
    transferkit.build(backbone, 2, dropout=0.1).save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps(
        {"command": "train", "class_names": ["neg", "pos"], "max_length": 16,
         "backbone": "minilm_l6", "arguments": {"data_dir": str(tmp_path / "gone.csv")}}))
    result = export(folder, format=format, quantize=quantize)
    assert result.source == "random inputs" and result.same_class == result.samples == 32
    record = json.loads((pathlib.Path(result.path) / "config.json").read_text())
    assert record["input"] == {"name": "token_ids", "shape": [None, 16], "dtype": "int32"}
