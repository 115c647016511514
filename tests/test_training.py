"""`transferkit train / predict / evaluate` on small generated image folders."""

import json
import os

import numpy as np
import pytest
from helpers import FAST, make_folder, run
from PIL import Image

from transferkit.data import load_images


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_folder(root / "data", corrupt=True)
    val = make_folder(root / "val", n=4, seed=1)
    out = root / "run"
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert run("train", data, "--val", val, "--out", out, *FAST) == 0
    return data, val, out


def test_config_json_rebuilds_the_runs_training_config(trained):
    from transferkit import TrainingConfig

    data, val, out = trained
    config = json.loads((out / "config.json").read_text())
    rebuilt = TrainingConfig.from_dict(config["training"])
    # Head "auto" is recorded as decided (random weights: softmax), so a rerun is the same.
    assert rebuilt == TrainingConfig("mobilenet_v3_small", head="softmax", weights=None,
                                     image_size=32, epochs=(2, 1), batch_size=8, augment="none")
    assert {k: config["arguments"][k] for k in config["training"]} == config["training"]


def test_train_writes_a_complete_run(trained):
    data, val, out = trained
    assert sorted(os.listdir(out)) == ["config.json", "curves.png", "features", "history.json",
                                       "metrics.json", "model.keras", "training_log.csv"]
    assert len(os.listdir(out / "features")) == 4  # training and validation features, sidecars
    assert not [p for p in os.listdir(out.parent) if p.startswith(".run.tmp")]
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["epochs_run"] == 3 == len(history["history"]["val_accuracy"])
    best = metrics["best_epoch"] - 1
    assert metrics["best_val_accuracy"] == history["history"]["val_accuracy"][best]
    assert metrics["best_val_loss"] == min(history["history"]["val_loss"])
    assert metrics["train_images"] == 20 and metrics["val_images"] == 8
    assert [os.path.basename(p) for p in metrics["skipped_files"]] == ["broken.jpg"]
    assert history["history"]["phase"] == [0, 0, 1]
    assert config["class_names"] == ["blue", "red"]
    assert config["image_size"] == [32, 32]
    assert config["arguments"]["epochs"] == [2, 1]
    assert config["arguments"]["batchnorm"] == "frozen"
    assert config["versions"]["keras"]
    # The final model is the best epoch's: its accuracy on val is the best one.
    from transferkit.evaluation.inference import evaluate

    result = evaluate(out, val)
    assert result["accuracy"] == pytest.approx(metrics["final_val_accuracy"])
    assert result["accuracy"] == pytest.approx(metrics["best_val_accuracy"])


@pytest.mark.slow  # end to end, ~20-35 s: `pytest -m slow`
def test_rerun_from_config_repeats_the_run(trained, tmp_path):
    import transferkit

    data, val, out = trained
    arguments = json.loads((out / "config.json").read_text())["arguments"]
    arguments.update(out=tmp_path / "again", verbose=0)
    again = transferkit.train(**arguments)
    first = json.loads((out / "history.json").read_text())["history"]
    np.testing.assert_allclose(again["tuner"].history_["val_loss"], first["val_loss"], rtol=1e-4)


def test_predict_prints_a_class_per_image_and_csv(trained, capsys):
    data, val, out = trained
    capsys.readouterr()
    assert run("predict", out, val / "red", val / "blue" / "blue0.jpg") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    path, label, probability = lines[-1].split()
    assert path.endswith("blue0.jpg") and label in ("blue", "red")
    assert 0.5 <= float(probability) <= 1.0

    assert run("predict", out, val / "red", "--csv") == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "path,class,probability,p_blue,p_red"
    for row in rows[1:]:
        cells = row.split(",")
        assert float(cells[3]) + float(cells[4]) == pytest.approx(1.0, abs=1e-5)
        assert float(cells[2]) == max(float(cells[3]), float(cells[4]))


def test_predict_matches_the_model_on_the_same_pixels(trained):
    import keras

    from transferkit.evaluation.inference import predict

    data, val, out = trained
    files = sorted((val / "red").iterdir())
    model = keras.saving.load_model(out / "model.keras")
    expected = model.predict(load_images(files, 32), verbose=0)
    rows = predict(out, files)
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, rtol=1e-5, atol=1e-6)


def test_evaluate_prints_accuracy_per_class_and_confusion(trained, capsys):
    from transferkit.evaluation.inference import predict

    data, val, out = trained
    capsys.readouterr()
    assert run("evaluate", out, val, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    rows = predict(out, [val / "blue", val / "red"])
    truth = [0] * 4 + [1] * 4
    guessed = [["blue", "red"].index(r["class"]) for r in rows]
    assert result["accuracy"] == pytest.approx(np.mean(np.equal(truth, guessed)))
    matrix = np.zeros((2, 2), int)
    for t, g in zip(truth, guessed):
        matrix[t, g] += 1
    assert result["confusion_matrix"] == matrix.tolist()
    assert run("evaluate", out, val) == 0
    text = capsys.readouterr().out
    assert text.startswith("accuracy ") and "precision" in text and "confusion matrix" in text


@pytest.mark.parametrize("args, words", [
    (["--backbone", "resnet5"], "did you mean 'resnet50'"),
    (["--epochs", "5"], "--epochs takes two counts"),
    (["--lr", "-1"], "--lr takes one or two positive rates"),
    (["--lr", "1e-4,1e-3"], "should not exceed"),
    (["--val-split", "1.5"], "--val-split"),
    (["--unfreeze", "half"], "Unknown freeze plan"),
    (["--kernel", "l3:1"], "l3"),
    (["--augment", "spin=3"], "spin"),
    (["--image-size", "8"], "at least 32"),
    (["--optimizer", "adamax"], "Unknown optimizer"),
])
def test_bad_train_arguments_exit_2_before_reading_images(trained, tmp_path, capsys, args, words):
    data, val, out = trained
    argv = ["train", data, "--out", tmp_path / "run", *FAST, *args]
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run").exists()


def test_bad_folders_exit_2_and_write_nothing(tmp_path, capsys):
    one = tmp_path / "one"
    (one / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "cats" / "a.png")
    assert run("train", one, "--out", tmp_path / "run", *FAST) == 2
    assert "at least two class" in capsys.readouterr().err
    assert run("train", tmp_path / "missing", "--out", tmp_path / "run", *FAST) == 2
    assert "missing" in capsys.readouterr().err
    data = make_folder(tmp_path / "data", n=3, corrupt=True)
    assert run("train", data, "--strict", "--out", tmp_path / "run", *FAST) == 2
    assert "broken.jpg" in capsys.readouterr().err
    other = make_folder(tmp_path / "other", n=2, classes=("cat", "dog"))
    assert run("train", data, "--val", other, "--out", tmp_path / "run", *FAST) == 2
    assert "differ" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    assert run("train", data, "--out", tmp_path / "busy", *FAST) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_an_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    from transferkit.training import recipe

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe.FineTuner, "fit", interrupted)
    data = make_folder(tmp_path / "data", n=3)
    # Ctrl-C: one line and exit 130 (issue 14), the run folder not left half-done;
    # only the frozen features computed before it are kept, for the next run.
    assert run("train", data, "--out", tmp_path / "run", *FAST) == 130
    assert sorted(os.listdir(tmp_path)) == ["data", "run.partial"]
    assert os.listdir(tmp_path / "run.partial") == ["features"]


def test_predict_and_evaluate_bad_input(trained, tmp_path, capsys):
    data, val, out = trained
    assert run("predict", tmp_path / "nope", val) == 2
    assert "No such run folder" in capsys.readouterr().err
    assert run("predict", out, tmp_path / "missing.jpg") == 2
    assert "missing.jpg" in capsys.readouterr().err
    other = make_folder(tmp_path / "other", n=2, classes=("blue", "green"))
    assert run("evaluate", out, other) == 2
    assert "green" in capsys.readouterr().err


@pytest.mark.slow  # end to end, ~20-35 s: `pytest -m slow`
def test_from_scratch_is_one_phase_with_everything_trainable(tmp_path):
    data = make_folder(tmp_path / "data", n=4)
    argv = ["train", data, "--out", tmp_path / "run", *FAST, "--from-scratch"]
    assert run(*argv) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    (phase,) = history["phases"]
    assert phase["name"] == "scratch" and phase["epochs"] == 3
    assert phase["trainable_params"] > 0 and history["history"]["phase"] == [0, 0, 0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["arguments"]["from_scratch"] is True
