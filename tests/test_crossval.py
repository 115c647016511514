"""`train --head logreg|linear-svm`, the feature cache of `train`, and `transferkit cv`."""

import json
import os

import numpy as np
import pytest
from helpers import FAST, make_folder, run

LINEAR = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
          "--batch-size", "8", "--no-report"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear")
    return make_folder(root / "data", n=12), make_folder(root / "val", n=4, seed=1)


@pytest.mark.parametrize("head", ["logreg", "linear-svm"])
def test_linear_head_run_predicts_and_evaluates(folders, tmp_path, capsys, head):
    from transferkit.evaluation.inference import evaluate, predict

    data, val = folders
    out = tmp_path / "run"
    assert run("train", data, "--val", val, "--out", out, "--head", head, *LINEAR) == 0
    log = capsys.readouterr().out
    assert f"{head}: C=" in log and "Hint" not in log
    assert sorted(os.listdir(out)) == ["config.json", "curves.png", "features", "history.json",
                                       "metrics.json", "model.keras"]
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    grid = json.loads((out / "history.json").read_text())["grid"]
    assert config["head"] == head and config["arguments"]["head"] == head
    assert metrics["C"] == config["C"] == [r["C"] for r in grid if r["chosen"]][0]
    assert metrics["epochs_run"] == 0 and metrics["cv_folds"] == 5
    # The saved model (backbone + the classifier as a Dense layer) gives the metrics.
    result = evaluate(out, val)
    assert result["accuracy"] == pytest.approx(metrics["best_val_accuracy"])
    rows = predict(out, [val / "red"])
    key = "score" if head == "linear-svm" else "probability"
    assert all(key in row for row in rows) and len(rows) == 4
    if head == "logreg":
        assert all(sum(row["probabilities"]) == pytest.approx(1, abs=1e-5) for row in rows)
        assert metrics["best_val_loss"] > 0
    else:
        assert all(row["scores"][0] == pytest.approx(-row["scores"][1]) for row in rows)
        assert metrics["best_val_loss"] is None
        assert run("predict", out, val / "red" / "red1.png") == 0
        assert capsys.readouterr().out.strip().endswith("(score)")
        assert run("predict", out, val / "red", "--csv") == 0
        assert capsys.readouterr().out.startswith("path,class,score,s_blue,s_red")


def test_a_shared_cache_dir_is_reused_and_rebuilt_when_damaged_or_changed(
        folders, tmp_path, capsys):
    data, val = folders
    cache = tmp_path / "cache"
    argv = ["train", data, "--val", val, "--head", "logreg", "--cache-dir", cache, *LINEAR]
    assert run(*argv, "--out", tmp_path / "a") == 0
    assert capsys.readouterr().out.count("extracted into") == 2
    assert not (tmp_path / "a" / "features").exists() and len(os.listdir(cache)) == 4
    assert run(*argv, "--out", tmp_path / "b") == 0
    assert capsys.readouterr().out.count("read from") == 2
    a, b = (json.loads((tmp_path / p / "metrics.json").read_text()) for p in "ab")
    assert a["best_val_accuracy"] == b["best_val_accuracy"] and a["C"] == b["C"]
    # Truncated entries are detected and rebuilt, never used.
    for name in os.listdir(cache):
        if name.endswith(".npy"):
            (cache / name).write_bytes((cache / name).read_bytes()[:-100])
    assert run(*argv, "--out", tmp_path / "c") == 0
    assert capsys.readouterr().out.count("extracted into") == 2
    c = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert c["best_val_accuracy"] == a["best_val_accuracy"] and c["C"] == a["C"]
    # A changed training file is a new key: only the training features are recomputed.
    changed = sorted((data / "red").iterdir())[0]
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    assert run(*argv, "--out", tmp_path / "d") == 0
    log = capsys.readouterr().out
    assert "Training features: extracted" in log and "Validation features: read" in log


def test_small_training_sets_get_the_linear_hint(folders, tmp_path, capsys):
    data, val = folders
    assert run("train", data, "--val", val, "--out", tmp_path / "run", *FAST,
               "--epochs", "1,0") == 0
    log = capsys.readouterr().out
    assert "Hint: 24 training images is under ~1,000" in log and "--head logreg" in log


def test_linear_head_refuses_from_scratch(folders, tmp_path, capsys):
    data, _ = folders
    assert run("train", data, "--out", tmp_path / "run", "--head", "logreg",
               "--from-scratch", *LINEAR) == 2
    assert "from_scratch" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cv_folds_are_stratified_seeded_and_summarized(folders, tmp_path, capsys):
    from sklearn.model_selection import StratifiedKFold

    import transferkit

    data, _ = folders
    out = tmp_path / "cv"
    assert run("cv", data, "--folds", "3", "--head", "logreg", "--out", out, *LINEAR) == 0
    log = capsys.readouterr().out
    # One extraction for all folds.
    assert log.count("extracted into") == 1 and log.count("read from") == 2
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert sorted(os.listdir(out)) == ["config.json", "curves.png", "features", "history.json",
                                       "metrics.json"]
    folds = config["folds"]
    assert sorted(i for fold in folds for i in fold) == list(range(24))  # each image once
    labels = np.repeat([0, 1], 12)
    assert all(np.bincount(labels[fold]).tolist() == [4, 4] for fold in folds)
    expected = [sorted(v.tolist()) for _, v in StratifiedKFold(3, shuffle=True, random_state=0)
                .split(np.zeros(24), labels)]
    assert [sorted(f) for f in folds] == expected
    accuracies = [row["best_val_accuracy"] for row in metrics["folds"]]
    assert metrics["mean"]["best_val_accuracy"] == pytest.approx(np.mean(accuracies))
    assert metrics["std"]["best_val_accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    table = log[log.index("fold  train"):].splitlines()[:6]
    assert [line.split()[0] for line in table] == ["fold", "1", "2", "3", "mean", "std"]
    # The library gives the same figures (same seed, same folds).
    again = transferkit.cross_validate(data, "mobilenet_v3_small", folds=3, head="logreg",
                                       weights=None, image_size=32, batch_size=8, verbose=0)
    assert [r["best_val_accuracy"] for r in again["folds"]] == accuracies
    assert again["out"] is None


@pytest.mark.slow  # end to end, ~20-35 s: `pytest -m slow`
def test_cv_with_a_trained_head_shares_features_across_folds(folders, tmp_path, capsys):
    data, _ = folders
    assert run("cv", data, "--folds", "2", *FAST, "--epochs", "2,0") == 0
    log = capsys.readouterr().out
    assert log.count("extracted into") == 1 and log.count("read from") == 1
    assert "best_epoch" in log and "mean" in log


@pytest.mark.parametrize("args, words", [
    (["--folds", "1"], "--folds must be at least 2"),
    (["--folds", "13"], "fewer than --folds 13"),
    (["--head", "logreg", "--from-scratch"], "from_scratch"),
    (["--epochs", "x"], "--epochs"),
])
def test_bad_cv_arguments_exit_2_and_write_nothing(folders, tmp_path, capsys, args, words):
    data, _ = folders
    assert run("cv", data, "--out", tmp_path / "cv", *LINEAR, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow  # end to end, ~20-35 s: `pytest -m slow`
def test_train_with_augmentation_says_which_path_the_head_phase_takes(folders, tmp_path, capsys):
    data, val = folders
    base = ["train", data, "--val", val, *FAST, "--epochs", "2,0", "--augment", "flip=horizontal"]
    assert run(*base, "--out", tmp_path / "plain") == 0
    log = capsys.readouterr().out
    assert "augmentation on: plain path (augmented_copies=K would cache" in log
    assert not (tmp_path / "plain" / "features").exists()
    assert run(*base, "--augmented-copies", "2", "--out", tmp_path / "copies") == 0
    log = capsys.readouterr().out
    assert "2 augmented copies" in log
    config = json.loads((tmp_path / "copies" / "config.json").read_text())
    assert config["arguments"]["augmented_copies"] == 2
    assert config["augmentation"]["flip"] == "horizontal"


def test_train_and_cv_write_a_report_by_default(folders, tmp_path):
    data, _ = folders
    out = tmp_path / "run"
    assert run("train", data, "--out", out, "--head", "logreg", *LINEAR[:-1]) == 0
    report = json.loads((out / "report.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    # Evaluated on the held-out split: its size and the run's validation accuracy.
    assert report["evaluation"]["images"] == metrics["val_images"] == 4  # 2 of 12 a class
    assert report["evaluation"]["accuracy"] == pytest.approx(metrics["best_val_accuracy"])
    assert report["run_dir"] == str(out) and ".tmp" not in (out / "report.html").read_text()
    cv = tmp_path / "cv"
    assert run("cv", data, "--folds", "2", "--head", "logreg", "--out", cv, *LINEAR[:-1]) == 0
    report = json.loads((cv / "report.json").read_text())
    assert report["command"] == "cv" and len(report["folds"]["folds"]) == 2
    assert (cv / "report.html").stat().st_size > 1000
