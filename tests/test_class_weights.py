"""Class weights: parsed and checked, reaching the loss, and the skewed-class metrics."""

import json

import numpy as np
import pytest
from helpers import FAST, make_folder, run
from PIL import Image

import transferkit
from transferkit.errors import TransferkitError
from transferkit.evaluation.inference import class_scores, load_run
from transferkit.training.class_weights import (
    check_class_weight,
    class_weights,
    imbalance_metrics,
    sample_weights,
)

NAMES = ["ants", "bees", "wasps"]


def test_balanced_weighs_each_class_n_over_k_times_its_count():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    expected = np.array([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)], np.float32)
    weights = class_weights("balanced", labels, NAMES)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    # Every class then weighs as much in the loss: n / k each.
    per_class = [sample_weights(weights, labels)[labels == c].sum() for c in range(3)]
    np.testing.assert_allclose(per_class, [10 / 3] * 3, rtol=1e-6)
    assert class_weights("balanced", np.array([0, 0, 1]), NAMES)[2] == 0  # absent: weighs 0
    assert class_weights(None, labels, NAMES) is None
    assert class_weights("none", labels, NAMES) is None


def test_weight_files_in_json_and_csv(tmp_path):
    (tmp_path / "w.json").write_text('{"bees": 10, "ants": 1, "wasps": 0.5}')
    (tmp_path / "w.csv").write_text("class,weight\nants,1\nbees,10\n\nwasps,0.5\n")
    for name in ("w.json", "w.csv"):
        np.testing.assert_array_equal(class_weights(str(tmp_path / name), [0, 1, 2], NAMES),
                                      [1, 10, 0.5])
    assert class_weights({"ants": 2, "bees": 1, "wasps": 1}, [0], NAMES)[0] == 2


@pytest.mark.parametrize("content, words", [
    ('{"ants": 1, "bees": 2, "wasps": 1, "flies": 3}', "not among the classes"),
    ('{"ants": 1, "bees": 2}', "no weight for ['wasps']"),
])
def test_weights_must_name_exactly_the_classes(tmp_path, content, words):
    path = tmp_path / "w.json"
    path.write_text(content)
    with pytest.raises(TransferkitError, match=words.replace("[", r"\[").replace("]", r"\]")):
        class_weights(str(path), [0, 1, 2], NAMES)


@pytest.mark.parametrize("name, content, words", [
    ("w.json", '{"ants": -1}', "must be a number >= 0"),
    ("w.json", '{"ants": "heavy"}', "must be a number >= 0"),
    ("w.json", '[1, 2]', "expected a JSON object"),
    ("w.json", '{"ants": 1', "Cannot read class weights"),
    ("w.csv", "ants,1\nants,2\n", "has two weights (line 2)"),
    ("w.csv", "ants,1,2\n", "line 1: expected 'class,weight'"),
    ("w.csv", "", "holds no class weights"),
    ("w.txt", "ants 1", "from a .json file"),
])
def test_malformed_weight_files_are_one_line_errors(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TransferkitError) as error:
        check_class_weight("class_weight", str(path))
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["heavy", 3, "/no/such/weights.json"])
def test_other_values_are_refused(value):
    with pytest.raises(TransferkitError, match="class_weight"):
        check_class_weight("class_weight", value)


def _constant_folder(root, counts):
    """Identical grey images: the only thing to learn is the (weighted) class prior."""
    pixels = np.full((32, 32, 3), 128, np.uint8)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("head", ["softmax", "logreg"])
def test_weights_move_the_decision_as_computed(tmp_path, head):
    # With identical inputs, weighted cross-entropy is lowest at
    # p(a) = w_a n_a / (w_a n_a + w_b n_b): 10 a and 30 b give 0.25 unweighted,
    # and 0.75 when a weighs 9. Each run's validation images have its optimum's
    # ratio, so that keeping the best epoch keeps the last.
    data = _constant_folder(tmp_path / "data", {"a": 10, "b": 30})
    options = {"weights": None, "image_size": 32, "augment": False, "report": False,
               "head": head}
    if head == "softmax":
        options.update(epochs=(20, 0), learning_rate=0.2, batch_size=40, patience=None,
                       dropout=0.0)
    pixels = np.full((1, 32, 32, 3), 128, np.uint8)
    for name, weight, expected, val in (("plain", None, 0.25, {"a": 1, "b": 3}),
                                        ("weighted", {"a": 9.0, "b": 1.0}, 0.75,
                                         {"a": 3, "b": 1})):
        result = transferkit.train(data, "mobilenet_v3_small", tmp_path / name,
                                   val=_constant_folder(tmp_path / f"val-{name}", val),
                                   class_weight=weight, verbose=0, **options)
        p_a = float(class_scores(load_run(tmp_path / name), pixels)[0, 0])
        assert p_a == pytest.approx(expected, abs=0.02), name
        if weight:
            np.testing.assert_allclose(result["metrics"]["class_weights"], [9.0, 1.0])


def test_imbalance_metrics_match_the_definitions():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([[.9, .1], [.8, .2], [.7, .3], [.4, .6], [.45, .55], [.6, .4]])
    figures = imbalance_metrics(labels, scores)
    # predicted 0 0 0 1 1 0: class 0 precision 3/4 recall 3/4; class 1 precision 1/2 recall 1/2.
    assert figures["macro_f1"] == pytest.approx((0.75 + 0.5) / 2)
    assert figures["balanced_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    # (negative, positive) pairs ranked right: 0.55 and 0.4 each beat 0.1, 0.2, 0.3, not 0.6.
    assert figures["roc_auc"] == pytest.approx(6 / 8)
    # Class 1 from p(1) >= 0.4 on: recalls 1 and 3/4, 0.875, the best any threshold gives.
    assert figures["threshold"] == pytest.approx(0.4)
    assert figures["balanced_accuracy_at_threshold"] == pytest.approx(0.875)
    assert "roc_auc" not in imbalance_metrics([0, 1, 2], np.eye(3))


def test_train_records_the_weights_and_the_skewed_class_metrics(tmp_path):
    data = _constant_folder(tmp_path / "data", {"a": 4, "b": 8})
    (tmp_path / "w.csv").write_text("a,2\nb,1\n")
    out = tmp_path / "run"
    assert run("train", data, "--out", out, *FAST, "--class-weight", tmp_path / "w.csv",
               "--val-split", "0.5", "--epochs", "1,0") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_weights"] == [2.0, 1.0]
    for key in ("val_macro_f1", "val_balanced_accuracy", "val_roc_auc", "val_pr_auc"):
        assert 0 <= metrics[key] <= 1, key
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["class_weight"] == str(tmp_path / "w.csv")


def test_a_weight_file_that_does_not_fit_the_folder_stops_before_training(tmp_path, capsys):
    data = _constant_folder(tmp_path / "data", {"a": 4, "b": 4})
    (tmp_path / "w.json").write_text('{"a": 1, "c": 2}')
    assert run("train", data, "--out", tmp_path / "run", *FAST,
               "--class-weight", tmp_path / "w.json") == 2
    err = capsys.readouterr().err.strip()
    assert "not among the classes ['a', 'b']" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    assert run("train", data, "--out", tmp_path / "run", *FAST, "--class-weight", "heavy") == 2
    assert "no such file" in capsys.readouterr().err


def test_macro_f1_metric_equals_scikit_learns():
    from sklearn.metrics import f1_score

    from transferkit.training.metrics import MacroF1

    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 4, 50), rng.random((50, 4))
    metric = MacroF1()
    metric.update_state(labels[:20], scores[:20])  # accumulated over batches
    metric.update_state(labels[20:], scores[20:])
    assert float(metric.result()) == pytest.approx(
        f1_score(labels, scores.argmax(axis=1), average="macro"), abs=1e-6)
    binary = MacroF1()
    p = rng.random((30, 1))
    y = rng.integers(0, 2, 30)
    binary.update_state(y, p)
    assert float(binary.result()) == pytest.approx(
        f1_score(y, (p[:, 0] > 0.5).astype(int), average="macro"), abs=1e-6)


def test_monitoring_macro_f1_keeps_its_best_epoch_and_diagnoses(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n=8)
    out = tmp_path / "run"
    assert run("train", data, "--out", out, *FAST, "--epochs", "4,0",
               "--monitor", "val_macro_f1", "--no-report") == 0
    history = json.loads((out / "history.json").read_text())["history"]
    f1 = history["val_macro_f1"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(np.argmax(f1)) + 1  # the first best, a maximum
    load_run(out)  # the compiled metric reloads in safe mode
    capsys.readouterr()
    assert run("diagnose", out, "--monitor", "val_macro_f1") == 0
    assert "val_macro_f1" in capsys.readouterr().out


def test_a_monitor_makes_auto_fine_tune():
    from transferkit.training.config import TrainingConfig

    assert TrainingConfig("efficientnet_lite0").for_data(100).head == "logreg"
    assert TrainingConfig("efficientnet_lite0", monitor="val_macro_f1").for_data(100).head \
        == "softmax"
    with pytest.raises(TransferkitError, match="monitor"):
        TrainingConfig("efficientnet_lite0", monitor="val_f1")


def test_train_suggests_class_weights_for_skewed_classes_only(tmp_path, capsys):
    data = _constant_folder(tmp_path / "data", {"a": 3, "b": 9})
    options = [*FAST, "--epochs", "1,0", "--val-split", "0.25"]
    assert run("train", data, "--out", tmp_path / "one", *options) == 0
    assert "Hint: the classes are skewed (b 7, a 2)" in capsys.readouterr().out
    assert run("train", data, "--out", tmp_path / "two", *options,
               "--class-weight", "balanced") == 0
    assert "skewed" not in capsys.readouterr().out
