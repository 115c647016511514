"""`diagnose`: best epoch, over-fitting onset, gap and verdict on histories with known answers."""

import doctest
import json
import math

import pytest

from transferkit.evaluation import diagnosis
from transferkit.cli import main
from transferkit.evaluation.diagnosis import Diagnosis, diagnose, diagnose_run
from transferkit.errors import TransferkitError

# Seed 004's picture: validation loss lowest at epoch 4, then rising for 10
# epochs while the training loss keeps falling.
OVERFIT = {
    "loss": [0.60, 0.40, 0.30, 0.24, 0.19, 0.15, 0.12, 0.09, 0.07, 0.05, 0.04, 0.03, 0.02, 0.015],
    "val_loss": [0.50, 0.38, 0.32, 0.30, 0.31, 0.33, 0.36, 0.40, 0.45, 0.50, 0.56, 0.63, 0.70,
                 0.78],
    "accuracy": [0.70, 0.82, 0.87, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995,
                 0.997],
    "val_accuracy": [0.75, 0.84, 0.87, 0.88, 0.879, 0.877, 0.875, 0.87, 0.866, 0.862, 0.858, 0.855,
                     0.85, 0.847],
}
# Both losses high and still falling steeply at the end.
UNDERFIT = {"loss": [2.30, 2.05, 1.82, 1.62, 1.44, 1.28],
            "val_loss": [2.28, 2.06, 1.85, 1.66, 1.49, 1.34]}
# Both flat at the end, a small gap.
GOOD = {"loss": [0.50, 0.30, 0.25, 0.24, 0.235, 0.232, 0.231, 0.230],
        "val_loss": [0.50, 0.32, 0.28, 0.27, 0.268, 0.269, 0.267, 0.268]}


def rising(after, patience=3, ahead=()):
    """A curve whose minimum is epoch 4, then worse for `after` epochs, then `ahead`."""
    val = [0.9, 0.7, 0.55, 0.5] + [0.5 + 0.05 * (k + 1) for k in range(after)] + list(ahead)
    loss = [1.0 - 0.06 * k for k in range(len(val))]
    return {"loss": loss, "val_loss": val}


def test_textbook_overfitting():
    d = diagnose(OVERFIT)
    assert (d.verdict, d.best_epoch, d.overfitting_onset) == ("over-fitting", 4, 4)
    assert d.best == {"val_loss": 0.30, "val_accuracy": 0.88, "loss": 0.24, "accuracy": 0.90}
    gap = d.generalization_gap
    assert gap["best"]["epoch"] == 4 and gap["final"]["epoch"] == 14
    assert gap["best"]["loss"] == pytest.approx(0.06)
    assert gap["best"]["accuracy"] == pytest.approx(-0.02)
    assert gap["final"]["loss"] == pytest.approx(0.765)
    assert gap["final"]["accuracy"] == pytest.approx(-0.15)
    assert (d.final_epoch, d.epochs, d.diverged_epoch) == (14, 14, None)
    advice = " ".join(d.advice)
    for option in ("--augment", "--unfreeze blocks:1", "--kernel l2:1e-4", "--dropout 0.5",
                   "--dropout-after blocks", "--patience", "--lr", "--head logreg"):
        assert option in advice
    assert any("+160%" in r for r in d.reasons)  # 0.78 against 0.30
    text = str(d)
    assert text == d.summary()
    assert "Verdict: over-fitting" in text and "Over-fitting onset: epoch 4" in text
    assert "epoch 4: loss +0.06, accuracy -0.02; epoch 14: loss +0.765" in text


def test_seed_004_imdb_orders_of_magnitude():
    # The original IMDB network of seed 004: best at epoch 4, over-fit by epoch 20.
    val = [0.38, 0.30, 0.28, 0.277, 0.29, 0.31, 0.33, 0.36, 0.39, 0.42, 0.45, 0.49, 0.53, 0.57,
           0.61, 0.65, 0.69, 0.7221, 0.7739, 0.9725]
    loss = [0.50, 0.30, 0.22, 0.18, 0.15, 0.12, 0.10, 0.085, 0.07, 0.06, 0.05, 0.045, 0.04,
            0.035, 0.03, 0.027, 0.024, 0.0208, 0.0198, 0.0151]
    d = diagnose({"loss": loss, "val_loss": val, "acc": [0.8] * 19 + [0.9965],
                  "val_acc": [0.85] * 19 + [0.8298]})
    assert (d.verdict, d.overfitting_onset) == ("over-fitting", 4)
    assert d.generalization_gap["final"] == pytest.approx(
        {"epoch": 20, "loss": 0.9725 - 0.0151, "accuracy": 0.8298 - 0.9965})


def test_a_dip_below_the_minimum_inside_the_window_is_no_onset():
    d = diagnose(rising(2, ahead=[0.49]))  # worse at 5 and 6, a new best at 7
    assert d.overfitting_onset is None and d.best_epoch == 7
    assert d.verdict == "good fit"
    # Back to exactly the minimum is not "worse" either.
    assert diagnose(rising(2, ahead=[0.5, 0.5])).overfitting_onset is None


@pytest.mark.parametrize("patience", [1, 3, 5])
def test_patience_edges(patience):
    d = diagnose(rising(patience), patience=patience)
    assert (d.overfitting_onset, d.verdict) == (4, "over-fitting")
    short = diagnose(rising(patience - 1), patience=patience)
    assert short.overfitting_onset is None
    assert f"Over-fitting onset: not observed within {3 + patience} epoch" in str(short)
    # Patience 1: no rise at all, both curves still falling at the end.
    assert short.verdict == ("under-fitting" if patience == 1 else "inconclusive")


def test_unconfirmed_rise_is_inconclusive():
    d = diagnose(rising(2))
    assert d.verdict == "inconclusive" and d.overfitting_onset is None
    assert "only 2 epochs followed the best (patience 3)" in d.reasons[0]


def test_training_loss_must_fall_below_its_value_at_the_onset():
    history = rising(3)
    history["loss"][5] = history["loss"][3]  # equal, not below, inside the window
    d = diagnose(history)
    assert d.overfitting_onset is None
    history["loss"][5] = history["loss"][3] - 1e-9
    assert diagnose(history).overfitting_onset == 4


def test_validation_worse_while_training_loss_rises_is_not_overfitting():
    history = {"loss": [1.0, 0.8, 0.7, 0.75, 0.8, 0.9], "val_loss": [1.0, 0.8, 0.7, 0.8, 0.9, 1.0]}
    d = diagnose(history)
    assert (d.verdict, d.overfitting_onset) == ("inconclusive", None)
    assert "training loss did not fall" in d.reasons[0]
    assert any("learning rate" in a for a in d.advice)


def test_min_delta():
    history = {"loss": [1.0, 0.8, 0.6, 0.5, 0.4, 0.3],
               "val_loss": [1.0, 0.8, 0.6, 0.605, 0.61, 0.606]}
    assert diagnose(history).overfitting_onset == 3
    assert diagnose(history, min_delta=0.0045).overfitting_onset == 3
    assert diagnose(history, min_delta=0.0055).overfitting_onset is None  # 0.605 < 0.6055
    # An onset whose last epoch is within 5% of the best is not an over-fitting verdict.
    d = diagnose(history)
    assert d.verdict == "good fit"
    assert any("over-fitting onset" in r and "within 5%" in r for r in d.reasons)


def test_onset_on_a_tie_is_the_last_epoch_at_the_minimum():
    d = diagnose({"loss": [1.0, 0.8, 0.7, 0.6, 0.5, 0.4],
                  "val_loss": [1.0, 0.5, 0.5, 0.6, 0.7, 0.8]})
    assert (d.best_epoch, d.overfitting_onset, d.verdict) == (2, 3, "over-fitting")


def test_underfitting_still_improving():
    d = diagnose(UNDERFIT)
    assert d.verdict == "under-fitting" and d.overfitting_onset is None and d.best_epoch == 6
    assert "both still improving" in d.reasons[0]
    advice = " ".join(d.advice)
    assert "--epochs" in advice and "lr-find" in advice and "--unfreeze all" in advice


def test_underfitting_near_the_uniform_guess_needs_num_classes():
    flat = {"loss": [0.70, 0.69, 0.69, 0.68, 0.68], "val_loss": [0.70, 0.70, 0.69, 0.69, 0.69]}
    assert diagnose(flat).verdict == "good fit"
    d = diagnose(flat, num_classes=2)
    assert d.verdict == "under-fitting"
    assert "ln(2) = 0.6931" in d.reasons[0] and "98%" in d.reasons[0]
    assert diagnose(flat, num_classes=10).verdict == "good fit"  # 0.68 << 0.75 ln 10


def test_good_fit():
    d = diagnose(GOOD)
    assert d.verdict == "good fit" and d.best_epoch == 7 and d.overfitting_onset is None
    assert d.generalization_gap["best"]["loss"] == pytest.approx(0.036)
    assert any("transferkit cv" in a for a in d.advice)


def test_none_entries_of_a_phase_that_did_not_log():
    history = {key: list(values) for key, values in OVERFIT.items()}
    history["accuracy"][:3] = [None] * 3
    history["val_accuracy"][:3] = [None] * 3
    history["val_loss"][5] = None  # skipped: the window counts epochs with values
    history["phase"] = [0] * 3 + [1] * 11
    history["learning_rate"] = [1e-3] * 3 + [1e-4] * 11
    d = diagnose(history)
    assert (d.verdict, d.best_epoch, d.overfitting_onset) == ("over-fitting", 4, 4)
    assert d.epochs == 14
    history["val_accuracy"][3] = None
    d = diagnose(history)
    assert d.best["val_accuracy"] is None and "accuracy" not in d.generalization_gap["best"]
    json.dumps(d.to_dict(), allow_nan=False)
    # A monitor with a value at one epoch only: a single usable epoch.
    d = diagnose({"loss": [0.9, 0.8], "val_loss": [None, 0.85]})
    assert (d.verdict, d.best_epoch, d.final_epoch) == ("inconclusive", 2, 2)


def test_single_epoch():
    d = diagnose({"loss": [0.5], "val_loss": [0.6]})
    assert (d.verdict, d.best_epoch, d.overfitting_onset) == ("inconclusive", 1, None)
    assert "Over-fitting onset: not observed within 1 epoch " in str(d)
    assert diagnose({"loss": [2.2], "val_loss": [2.25]}, num_classes=10).verdict == "under-fitting"


@pytest.mark.parametrize("bad, said", [(math.nan, "NaN"), (math.inf, "infinite"),
                                       (None, "missing (a NaN saved as null)")])
def test_non_finite_training_loss_is_divergence(bad, said):
    d = diagnose({"loss": [1.0, 0.8, bad, bad], "val_loss": [1.0, 0.9, 1.5, None]})
    assert (d.verdict, d.diverged_epoch, d.best_epoch, d.final_epoch) == ("diverged", 3, 2, 2)
    assert f"training loss is {said} at epoch 3" in d.reasons[0]
    assert "lower the learning rate" in d.advice[0].lower()
    assert json.loads(json.dumps(d.to_dict(), allow_nan=False)) == d.to_dict()


def test_non_finite_validation_loss_and_divergence_from_the_start():
    d = diagnose({"loss": [1.0, 0.9], "val_loss": [1.0, math.nan]})
    assert (d.verdict, d.diverged_epoch) == ("diverged", 2)
    assert "val_loss is NaN at epoch 2" in d.reasons[0]
    d = diagnose({"loss": [math.nan, math.nan], "val_loss": [math.nan, math.nan]})
    assert (d.verdict, d.best_epoch, d.best, d.generalization_gap) == ("diverged", None, {}, {})
    assert "Best epoch: none" in str(d)


def test_accuracy_monitor():
    history = {key: list(values) for key, values in OVERFIT.items()}
    d = diagnose(history, monitor="val_accuracy")
    assert (d.best_epoch, d.overfitting_onset, d.verdict) == (4, 4, "good fit")
    # 0.847 against 0.88 is 3.75% worse: an onset, but within 5%; 0.80 is 9% worse.
    history["val_accuracy"][-1] = 0.80
    d = diagnose(history, monitor="val_accuracy")
    assert d.verdict == "over-fitting"
    assert list(d.best)[:2] == ["val_accuracy", "val_loss"]


def test_keras_history_and_run_file_shapes():
    class History:  # what model.fit returns
        history = GOOD

    assert diagnose(History()).verdict == "good fit"
    assert diagnose({"history": GOOD, "phases": []}).best_epoch == 7


def test_to_dict_round_trip():
    for history in (OVERFIT, UNDERFIT, GOOD):
        d = diagnose(history)
        text = json.dumps(d.to_dict(), allow_nan=False)
        assert Diagnosis(**json.loads(text)) == d


@pytest.mark.parametrize("history, kwargs, words", [
    ([0.1, 0.2], {}, "history must be a dict"),
    ({"loss": [0.5, 0.4]}, {}, "no validation metrics"),
    ({"loss": [0.5], "val_accuracy": [0.5]}, {}, "use monitor= one of val_accuracy"),
    ({"val_loss": [0.5]}, {}, "no training 'loss'"),
    ({"loss": [0.5, 0.4], "val_loss": [0.5]}, {}, "has 1 values but history['loss'] has 2"),
    ({"loss": [], "val_loss": []}, {}, "no epochs"),
    ({"loss": [0.5], "val_loss": ["high"]}, {}, "is 'high', not a number"),
    ({"loss": 0.5, "val_loss": [0.5]}, {}, "must be a list"),
    ({"loss": [0.5], "val_loss": [None]}, {}, "has no values"),
    (GOOD, {"patience": 0}, "patience must be an int >= 1"),
    (GOOD, {"patience": True}, "patience must be an int >= 1"),
    (GOOD, {"patience": 2.0}, "patience must be an int >= 1"),
    (GOOD, {"min_delta": -0.1}, "min_delta must be a number >= 0"),
    (GOOD, {"min_delta": math.nan}, "min_delta must be a number >= 0"),
    (GOOD, {"monitor": "loss"}, "monitor must be a validation metric"),
    (GOOD, {"num_classes": 1}, "num_classes must be an int >= 2"),
])
def test_bad_input_says_what_to_do(history, kwargs, words):
    with pytest.raises(TransferkitError) as info:
        diagnose(history, **kwargs)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_docstring_examples():
    assert doctest.testmod(diagnosis).failed == 0


# Run folders, written by hand: no training needed.

def write_run(path, history, config=None):
    path.mkdir()
    (path / "history.json").write_text(json.dumps(history))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def train_history(history):
    return {"history": {**history, "phase": [0] * len(history["loss"])}, "phases": [{}]}


def test_diagnose_run(tmp_path):
    flat = {"loss": [0.70, 0.69, 0.69, 0.68], "val_loss": [0.70, 0.70, 0.69, 0.69]}
    run = write_run(tmp_path / "run", train_history(flat),
                    {"command": "train", "class_names": ["ants", "bees"]})
    assert diagnose_run(run).verdict == "under-fitting"  # 2 classes from config.json
    (run / "config.json").unlink()
    assert diagnose_run(run).verdict == "good fit"

    cv = write_run(tmp_path / "cv", {"folds": [train_history(OVERFIT), train_history(GOOD)]})
    assert [d.verdict for d in diagnose_run(cv)] == ["over-fitting", "good fit"]


@pytest.mark.parametrize("content, words", [
    ({"grid": [{"C": 1.0, "accuracy": 0.9}]}, "no epochs to diagnose; a linear head"),
    ({"folds": [{"grid": []}]}, "(fold 1): no epochs to diagnose"),
    ({"folds": []}, "lists no folds"),
    ({"something": 1}, "is not a transferkit training history"),
    ({"history": {"loss": [0.5]}, "phases": []}, "history.json: The history has no validation"),
])
def test_diagnose_run_errors(tmp_path, content, words):
    run = write_run(tmp_path / "run", content)
    with pytest.raises(TransferkitError) as info:
        diagnose_run(run)
    assert words in str(info.value)


def test_diagnose_run_missing_folder_or_file(tmp_path):
    with pytest.raises(TransferkitError, match="No run folder"):
        diagnose_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TransferkitError, match="No such file: .*history.json"):
        diagnose_run(tmp_path / "empty")
    (tmp_path / "empty" / "history.json").write_text("{not json")
    with pytest.raises(TransferkitError, match="is not valid JSON"):
        diagnose_run(tmp_path / "empty")


def test_cli_prints_the_diagnosis(tmp_path, capsys):
    run = write_run(tmp_path / "run", train_history(OVERFIT),
                    {"command": "train", "class_names": ["a", "b"]})
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    for words in ("Verdict: over-fitting", "Best epoch: 4 of 14", "Over-fitting onset: epoch 4",
                  "Generalization gap", "Why:", "What to try next:", "--kernel l2:1e-4"):
        assert words in out

    assert main(["diagnose", str(run), "--json", "--patience", "11"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["verdict"], result["overfitting_onset"], result["patience"]) == (
        "inconclusive", None, 11)


def test_cli_cv_run(tmp_path, capsys):
    cv = write_run(tmp_path / "cv", {"folds": [train_history(OVERFIT), train_history(GOOD)]})
    assert main(["diagnose", str(cv)]) == 0
    out = capsys.readouterr().out
    assert "Fold 1/2\nVerdict: over-fitting" in out and "Fold 2/2\nVerdict: good fit" in out
    assert main(["diagnose", str(cv), "--json"]) == 0
    assert [d["verdict"] for d in json.loads(capsys.readouterr().out)] == ["over-fitting",
                                                                          "good fit"]


@pytest.mark.parametrize("extra, words", [
    ((), "No run folder"),
    (("--patience", "0"), "--patience must be at least 1"),
    (("--min-delta", "-1"), "--min-delta must be a number >= 0"),
    (("--min-delta", "nan"), "--min-delta must be a number >= 0"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, words):
    assert main(["diagnose", str(tmp_path / "missing"), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and words in captured.err
