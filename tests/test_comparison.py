"""`transferkit compare`: variants of one model on the same data, split and seed."""

import json
import os
import re

import pytest
from helpers import make_folder, run

from transferkit.workflows.compare import PRESETS, compare, read_variants, resolve_variants
from transferkit.errors import TransferkitError

# A small backbone with random weights at 32 px: fast, offline.
FAST = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
        "--epochs", "2,0", "--batch-size", "8", "--no-augment"]
OPTIONS = dict(weights=None, image_size=32, epochs=(2, 0), batch_size=8, augment=False)

VARIANTS_TOML = """\
# The base, and the base with an L2 penalty.
[base]
dropout = 0.3

[variants.original]

[variants.l2]
kernel = "l2:1e-4"
"""


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = make_folder(root / "data", n=10)
    config = root / "variants.toml"
    config.write_text(VARIANTS_TOML)
    out = root / "cmp"
    assert run("compare", data, "--config", config, "--out", out, "--val-split", "0.3",
               *FAST) == 0
    return data, config, out


def test_compare_writes_a_complete_folder(compared, capsys):
    data, config, out = compared
    assert sorted(os.listdir(out)) == ["comparison.png", "config.json", "features",
                                       "history.json", "metrics.json", "report.html",
                                       "report.json", "training_log.csv"]
    assert (out / "comparison.png").stat().st_size > 1000
    # The report shows the variants table, the comparison plot and each variant's diagnosis.
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "compare" and list(report["variants"]) == ["original", "l2"]
    assert list(report["diagnosis"]) == ["original", "l2"]
    page = (out / "report.html").read_text()
    assert "<h2>Variants</h2>" in page and page.count("data:image/png;base64,") == 1
    assert not [p for p in os.listdir(out.parent) if p.startswith(".cmp.tmp")]
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    saved = json.loads((out / "config.json").read_text())
    assert list(metrics["variants"]) == ["original", "l2"] == list(history["variants"])
    # The same split for all: 3 of each class's 10 images validate.
    assert metrics["train_images"] == 14 and metrics["val_images"] == 6
    for name, row in metrics["variants"].items():
        curves = history["variants"][name]["history"]
        assert row["epochs_run"] == 2 == len(curves["val_loss"])
        assert row["best_val_loss"] == min(curves["val_loss"])
        assert row["best_val_accuracy"] == curves["val_accuracy"][row["best_epoch"] - 1]
        assert row["last_val_loss"] == curves["val_loss"][-1]
        assert row["verdict"] == row["diagnosis"]["verdict"]
        assert row["overfitting_onset"] == row["diagnosis"]["overfitting_onset"]
    assert metrics["variants"]["l2"]["options"] == {"kernel": "l2:1e-4"}
    assert metrics["base"]["dropout"] == 0.3
    assert saved["command"] == "compare"
    assert saved["config_file"] == str(config)
    assert saved["arguments"]["variants"] == {"original": {}, "l2": {"kernel": "l2:1e-4"}}
    assert saved["arguments"]["dropout"] == 0.3 and saved["arguments"]["epochs"] == [2, 0]
    assert saved["arguments"]["seed"] == 0 and saved["image_size"] == [32, 32]


def test_a_variant_equal_to_the_base_repeats_train(compared, tmp_path):
    # `train` with the base options on the same folder, split and seed: the same history.
    from transferkit.workflows.train import train

    data, _, out = compared
    run_ = train(data, "mobilenet_v3_small", tmp_path / "run", val_split=0.3, dropout=0.3,
                 verbose=0, **OPTIONS)
    trained = json.loads((tmp_path / "run" / "history.json").read_text())
    compared_history = json.loads((out / "history.json").read_text())["variants"]["original"]
    assert trained == compared_history
    assert run_["metrics"]["val_images"] == 6


@pytest.mark.slow  # end to end, ~20-35 s: `pytest -m slow`
def test_rerun_from_config_with_presets_repeats_the_numbers(compared, tmp_path, capsys):
    from transferkit.saving import load_model

    _, _, out = compared
    arguments = json.loads((out / "config.json").read_text())["arguments"]
    before = json.loads((out / "metrics.json").read_text())["variants"]
    history = json.loads((out / "history.json").read_text())["variants"]
    arguments.update(out=tmp_path / "again", save_models=True, verbose=1,
                     variants=["original", "dropout"])
    result = compare(**arguments)
    log = capsys.readouterr().out
    assert result["out"] == str(tmp_path / "again") and result["val_images"] == 6
    assert list(result["variants"]) == ["original", "dropout"]
    # Same data, split, seed and options: the same numbers, to the last bit.
    assert result["variants"]["original"] == before["original"]
    assert result["histories"]["original"] == history["original"]
    assert result["variants"]["dropout"]["options"] == {"dropout": 0.5}
    # The backbone's features are computed once for both variants.
    assert log.count("Training features: extracted into") == 1
    assert log.count("Training features: read from") == 1
    assert "verdict" in log and "dropout=0.5" in log
    assert sorted(os.listdir(tmp_path / "again" / "variants")) == ["dropout", "original"]
    model = load_model(tmp_path / "again" / "variants" / "dropout" / "model.keras",
                       compile=False)
    assert model.output_shape == (None, 2)
    assert [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"] \
        == [0.5]


def test_resolve_variants():
    assert resolve_variants(["original", "l2"]) == {
        "original": ({}, "preset 'original'"), "l2": ({"kernel": "l2:1e-4"}, "preset 'l2'")}
    assert list(resolve_variants()) == list(PRESETS)
    assert list(resolve_variants("smaller, bigger")) == ["smaller", "bigger"]
    assert resolve_variants({"base": None})["base"][0] == {}
    for variants, message in ((["orginal"], "Unknown variant 'orginal' \\(did you mean "
                               "'original'\\?\\); the presets are"),
                              (["l2", "l2"], "listed twice"),
                              ([], "No variants"),
                              ({"a b": {}}, "names a folder"),
                              ({"x": {"seed": 1}}, "same for every variant"),
                              ({"x": {"image_size": 64}}, "same for every variant"),
                              ({"x": {"kernal": "l2:1e-4"}}, "did you mean 'kernel'")):
        with pytest.raises(TransferkitError, match=message):
            resolve_variants(variants)


BAD_TOML = [
    ("[variants.l2]\nkernal = 'l2:1e-4'\n", "line 2, \\[variants.l2\\]: unknown option "
     "'kernal' \\(did you mean 'kernel'\\?\\)"),
    ("[variants.a]\n\n[variants.b]\ndropout = 'half'\n",
     "\\[variants.b\\]: dropout must be in \\[0, 1\\), got 'half'"),
    ("[base]\nlearning_rate = 'fast'\n[variants.a]\n", "\\[base\\]: A learning rate must be"),
    ("[variants.a]\nseed = 3\n", "line 2, \\[variants.a\\]: seed is an argument of compare"),
    ("[variants.a]\nkernel = \n", "is not valid TOML: .*line 2"),
    ("[varients.a]\n", "line 1, \\[varients\\]: unknown table"),
    ("[base]\ndropout = 0.1\n", "defines no variants"),
]


@pytest.mark.parametrize("text, message", BAD_TOML)
def test_bad_variants_file_exits_2_before_reading_images(tmp_path, capsys, monkeypatch, text,
                                                          message):
    def refuse(*args, **kwargs):
        raise AssertionError("the images were scanned before the file's mistake was found")

    monkeypatch.setattr("transferkit.workflows.compare.scan_split", refuse)
    data = make_folder(tmp_path / "data", n=1)
    config = tmp_path / "variants.toml"
    config.write_text(text)
    out = tmp_path / "out"
    assert run("compare", data, "--config", config, "--out", out, *FAST) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("transferkit: error: ")
    assert re.search(message, error), error
    assert not os.path.exists(out) and sorted(os.listdir(tmp_path)) == ["data", "variants.toml"]
    with pytest.raises(TransferkitError, match=message):
        compare(data, "mobilenet_v3_small", config=config)


def test_cli_mistakes_exit_2(tmp_path, capsys):
    found, missing = make_folder(tmp_path / "data", n=1), tmp_path / "missing"
    for data, argv, message in (
            (found, ["--variants", "original,tiny"], "Unknown variant 'tiny'"),
            (found, ["--variants", "original", "--epochs", "3"], "--epochs takes two counts"),
            (found, ["--variants", "original", "--lr", "0"], "--lr takes one or two"),
            (found, ["--variants", "bigger", "--dropout", "1.5"],
             "The base options: dropout must"),
            (missing, ["--variants", "original"], "does not exist")):
        assert run("compare", data, "--backbone", "mobilenet_v3_small", *argv) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1
        assert re.search(message, error), error
