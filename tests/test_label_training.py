"""Training, predicting and evaluating on label tables: several labels, or a number, per image."""

import json

import keras
import numpy as np
import pytest
from helpers import FAST, run
from PIL import Image

from transferkit.evaluation.inference import load_run
from transferkit.training.trainer import rescale_head, target_scale


def tinted(root, n=16, seed=0):
    """`n` images: red, green or both tinted by `i`; returns `(red, green, brightness)` of each."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    truth = []
    for i in range(n):
        red, green = i % 2, (i // 2) % 2
        pixels = rng.integers(0, 60, (36, 36, 3)).astype(np.uint8)
        pixels[..., 0] += 180 * red
        pixels[..., 1] += 180 * green
        Image.fromarray(pixels).save(root / f"{i:02d}.png")
        truth.append((red, green, float(pixels.mean())))
    return truth


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    truth = tinted(root / "images")
    multi = root / "multi.csv"
    multi.write_text("file,labels\n" + "".join(
        f"{i:02d}.png,{';'.join(n for n, on in (('red', r), ('green', g)) if on)}\n"
        for i, (r, g, _) in enumerate(truth)))
    numbers = root / "bright.csv"
    numbers.write_text("file,brightness\n" + "".join(
        f"{i:02d}.png,{b:.3f}\n" for i, (*_, b) in enumerate(truth)))
    return root, truth


def test_rescaling_the_head_folds_the_target_scale_exactly():
    head = keras.layers.Dense(1)
    head.build((None, 4))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    z = keras.ops.convert_to_numpy(head(x))
    mean, std = target_scale([1.0, 4.0, 10.0])
    assert (mean, std) == (5.0, pytest.approx(np.std([1.0, 4.0, 10.0])))
    rescale_head(head, mean, std)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), std * z + mean, rtol=1e-5)
    assert target_scale([3.0, 3.0]) == (3.0, 1.0)  # a constant target keeps its scale


def test_a_multilabel_network_trains_predicts_and_evaluates(tables, tmp_path, capsys):
    root, _ = tables
    out = tmp_path / "multi"
    assert run("train", root / "images", "--labels", root / "multi.csv", "--out", out,
               "--head", "softmax", "--val-split", "0.25", *FAST) == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["task"] == "multilabel" and config["class_names"] == ["green", "red"]
    assert config["outputs"] == "label probabilities" and len(config["thresholds"]) == 2
    assert config["arguments"]["table"]["labels"] == str(root / "multi.csv")
    for key in ("val_micro_f1", "val_macro_f1", "val_mean_average_precision", "best_val_loss"):
        assert 0 <= metrics[key] <= 1 or key == "best_val_loss"
    loaded = load_run(out)
    assert loaded.model.layers[-1].activation.__name__ == "sigmoid"
    capsys.readouterr()
    files = sorted((root / "images").iterdir())[:4]
    assert run("predict", out, *files, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    probabilities = loaded.model.predict(
        np.stack([np.asarray(Image.open(f).resize((32, 32), Image.Resampling.BILINEAR),
                             "float32") for f in files]), verbose=0)
    for row, p in zip(rows, probabilities):
        np.testing.assert_allclose(row["probabilities"], p, atol=1e-4)
        above = [n for n, q, t in zip(config["class_names"], p, config["thresholds"]) if q >= t]
        assert sorted(row["labels"]) == sorted(above)
    assert run("evaluate", out, root / "images", "--labels", root / "multi.csv") == 0
    printed = capsys.readouterr().out
    assert "micro-F1" in printed and "green" in printed and "threshold" in printed


def test_a_regression_network_outputs_the_targets_units(tables, tmp_path, capsys):
    root, truth = tables
    out = tmp_path / "bright"
    assert run("train", root / "images", "--labels", root / "bright.csv", "--out", out,
               "--head", "softmax", "--loss", "huber", "--val-split", "0.25", *FAST) == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["task"] == "regression" and config["outputs"] == "values"
    assert config["training"]["loss"] == "huber"
    values = np.array([b for *_, b in truth])
    assert metrics["target_mean"] == pytest.approx(values.mean(), abs=30)
    capsys.readouterr()
    assert run("evaluate", out, root / "images", "--labels", root / "bright.csv",
               "--json") == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["images"] == len(truth)
    predicted = load_run(out).model.predict(np.stack([
        np.asarray(Image.open(root / "images" / f"{i:02d}.png").resize(
            (32, 32), Image.Resampling.BILINEAR), "float32") for i in range(len(truth))]),
        verbose=0).reshape(-1)
    assert figures["mae"] == pytest.approx(np.abs(predicted - values).mean(), rel=1e-4)
    # In the target's units: the predictions lie around its mean, not around 0.
    assert abs(predicted.mean() - values.mean()) < values.std() * 3


@pytest.mark.parametrize("extra, message", [
    (["--head", "ridge"], "head='ridge' predicts numbers"),
    (["--loss", "mae"], "loss='mae' is for regression"),
])
def test_options_that_do_not_fit_the_classes_are_refused(tmp_path, capsys, extra, message):
    from helpers import make_folder

    data = make_folder(tmp_path / "data", n=4)
    assert run("train", data, "--out", tmp_path / "out", *FAST, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--head", "logreg"], "head='logreg' classifies"),
    (["--class-weight", "balanced"], "class_weight is for classes"),
    (["--monitor", "val_accuracy"], "monitor='val_accuracy' is for classes"),
    (["--val", "{images}"], "needs its own table: pass --val-labels"),
    (["--balanced-batches"], "balanced_batches is for classes"),
    (["--augment", "mixup=0.2"], "mixup, cutmix and augmix serve class labels"),
])
def test_options_that_do_not_fit_numbers_are_refused(tables, tmp_path, capsys, extra, message):
    root, _ = tables
    extra = [e.format(images=root / "images") for e in extra]
    assert run("train", root / "images", "--labels", root / "bright.csv", "--out",
               tmp_path / "out", *FAST, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_table_errors_come_before_any_training(tables, tmp_path, capsys):
    root, _ = tables
    assert run("train", root / "images", "--labels", root / "missing.csv", "--out",
               tmp_path / "out", *FAST) == 2
    err = capsys.readouterr().err
    assert "Label table" in err and "does not exist" in err
    assert run("train", root / "images", "--val-labels", root / "multi.csv", "--out",
               tmp_path / "out", *FAST) == 2
    assert "--val-labels goes with --labels" in capsys.readouterr().err


def test_the_loss_follows_the_task_and_the_loss_option():
    from transferkit.training.trainer import regression_loss

    assert regression_loss("auto") == regression_loss("mse") == "mean_squared_error"
    assert regression_loss("mae") == "mean_absolute_error"
    huber = regression_loss("huber")  # on standardized targets: delta one std
    assert isinstance(huber, keras.losses.Huber)
    y, p = np.array([[0.0], [0.0]]), np.array([[0.5], [3.0]])
    expected = np.mean([0.5 * 0.5 ** 2, 1.0 * (3.0 - 0.5 * 1.0)])  # numpy's Huber, delta 1
    assert float(huber(y, p)) == pytest.approx(expected, rel=1e-6)


def test_auto_decides_the_head_per_task():
    from transferkit.training.config import TrainingConfig

    config = TrainingConfig("efficientnet_lite0")
    assert config.for_data(245, "multilabel").head == "logreg"
    assert config.for_data(245, "regression").head == "softmax"
    assert config.for_data(245, "classes").head == "logreg"


def test_a_label_table_option_is_checked_when_made():
    from transferkit.errors import TransferkitError
    from transferkit.training.config import LabelTable

    with pytest.raises(TransferkitError, match="task must be one of"):
        LabelTable("t.csv", task="numbers")
    assert LabelTable("t.csv").read_arguments(True)["skip_bad_rows"] is True


def test_report_refuses_and_export_checks_a_regression_run(tables, tmp_path, capsys):
    root, _ = tables
    out = tmp_path / "ridge"
    assert run("train", root / "images", "--labels", root / "bright.csv", "--out", out,
               "--head", "ridge", "--backbone", "mobilenet_v3_small", "--weights", "none",
               "--image-size", "32", "--quiet") == 0
    capsys.readouterr()
    assert run("report", out) == 2
    assert "report.html covers classes" in capsys.readouterr().err
    assert run("export", out, "--format", "litert", "--quantize", "float16") == 2
    assert "export it unquantized" in capsys.readouterr().err
    assert run("export", out, "--format", "litert") == 0
    printed = capsys.readouterr().out
    assert "validation images" in printed  # checked on the run's own validation split
