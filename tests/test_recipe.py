"""The phased fine-tuning recipe, source-model reuse, and the digits demo."""

import json

import keras
import numpy as np
import pytest
from conftest import snapshot

import transferkit
from transferkit.errors import TransferkitError
from transferkit.training.recipe import FineTuner, Phase, default_recipe
from transferkit.models.transfer import reuse


def source_model():
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="hidden1"),
         keras.layers.Dense(16, activation="relu", name="hidden2"),
         keras.layers.Dense(4, activation="softmax", name="output")],
        name="model_a",
    )


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64")
    return x, y


def test_default_recipe_lowers_the_rate_tenfold():
    head, tune = default_recipe(epochs=(3, 7), learning_rate=2e-3)
    assert (head.epochs, head.unfreeze, tune.epochs, tune.unfreeze) == (3, "none", 7, "all")
    assert tune.learning_rate == pytest.approx(2e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=-1, learning_rate=1e-3), "epochs"),
    (dict(epochs=2, learning_rate=0), "learning rate"),
    (dict(epochs=2, learning_rate=float("nan")), "learning rate"),
    (dict(epochs=2, learning_rate=1e-3, optimizer="adamm"), "Unknown optimizer"),
    (dict(epochs=2, learning_rate=1e-3, unfreeze="most"), "Unknown freeze plan"),
])
def test_phase_validation(kwargs, match):
    with pytest.raises(TransferkitError, match=match):
        Phase(**kwargs)


def test_phase_one_trains_the_head_only_then_phase_two_the_backbone():
    a = source_model()
    model = reuse(a, 2, head="binary")
    backbone = model.get_layer("backbone")
    x, y = data()
    start = snapshot(backbone)
    tuner = FineTuner([Phase(2, 1e-2, "none")], patience=None, verbose=0, seed=0)
    tuner.fit(model, x, y)
    assert all(np.array_equal(a_, b_) for a_, b_ in zip(start, snapshot(backbone)))

    tuner = FineTuner(default_recipe((2, 3), 1e-2), patience=None, verbose=0, seed=0)
    tuner.fit(model, x, y, validation_data=data(32, seed=1))
    assert not np.array_equal(start[0], snapshot(backbone)[0])
    history = tuner.history_
    assert history["phase"] == [0, 0, 1, 1, 1]
    assert history["learning_rate"] == pytest.approx([1e-2] * 2 + [1e-3] * 3)
    assert len(history["val_loss"]) == 5 and len(history["accuracy"]) == 5
    assert [p["first_epoch"] for p in tuner.phases_] == [0, 2]
    assert tuner.phases_[0]["trainable_params"] == 0
    assert tuner.phases_[1]["trainable_params"] == 6 * 16 + 16 + 16 * 16 + 16
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_the_best_weights_over_all_phases_are_restored():
    # Phase 2 at an absurd rate wrecks the model; the result must be phase 1's best.
    model = reuse(source_model(), 2, head="binary")
    x, y = data()
    val = data(32, seed=1)
    phases = [Phase(4, 1e-2, "none", name="head"), Phase(3, 9.0, "all", optimizer="sgd")]
    tuner = FineTuner(phases, patience=None, verbose=0, seed=0).fit(
        model, x, y, validation_data=val)
    losses = tuner.history_["val_loss"]
    assert tuner.best_epoch_ == int(np.nanargmin(np.array(losses, dtype=float)))
    assert tuner.best_epoch_ < 4, "phase 2 should have been worse"
    assert model.evaluate(*val, verbose=0)[0] == pytest.approx(losses[tuner.best_epoch_], rel=1e-4)
    assert tuner.best_["val_loss"] == losses[tuner.best_epoch_]


def test_early_stopping_ends_a_phase():
    model = reuse(source_model(), 2, head="binary")
    x, y = data()
    phases = [Phase(2, 1e-2, "none"), Phase(30, 9.0, "all", optimizer="sgd")]
    tuner = FineTuner(phases, patience=2, verbose=0, seed=0).fit(
        model, x, y, validation_data=data(32, seed=1))
    assert tuner.phases_[1]["stopped_early"]
    assert tuner.phases_[1]["epochs_run"] < 30
    assert len(tuner.history_["loss"]) == 2 + tuner.phases_[1]["epochs_run"]


def test_checkpoint_file_holds_the_best_weights(tmp_path):
    model = reuse(source_model(), 2, head="binary")
    path = tmp_path / "best.weights.h5"
    FineTuner(default_recipe((2, 2), 1e-2), checkpoint=path, verbose=0, seed=0).fit(
        model, *data(), validation_data=data(32, seed=1))
    other = reuse(source_model(), 2, head="binary")
    other.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(other)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(phases=[]), "non-empty"),
    (dict(phases=[Phase(0, 1e-3)]), "0 epochs"),
    (dict(patience=0), "patience"),
    (dict(batchnorm="on"), "batchnorm"),
    (dict(checkpoint="best.h5"), ".weights.h5"),
    (dict(monitor="val_auc"), "not among the logged metrics"),
])
def test_fine_tuner_validation(kwargs, match):
    model = reuse(source_model(), 2, head="binary")
    kwargs.setdefault("phases", [Phase(1, 1e-3)])
    with pytest.raises(TransferkitError, match=match):
        FineTuner(verbose=0, **kwargs).fit(model, *data())


def test_reuse_clones_so_training_b_never_changes_a():
    a = source_model()
    a_weights = snapshot(a)
    b = reuse(a, 2, head="binary")
    b_layers = {id(layer) for _, layer, _ in _walk(b)}
    assert not b_layers & {id(layer) for layer in a.layers}
    # On A: starts from A's hidden layers; from scratch: same shapes, new values.
    assert all(np.array_equal(u, v) for u, v in zip(a_weights[:4], snapshot(b.get_layer("backbone"))))
    scratch = reuse(a, 2, head="binary", from_scratch=True)
    scratch_weights = snapshot(scratch.get_layer("backbone"))
    assert [w.shape for w in scratch_weights] == [w.shape for w in a_weights[:4]]
    assert not np.array_equal(scratch_weights[0], a_weights[0])

    FineTuner(default_recipe((2, 2), 1e-2), patience=None, verbose=0).fit(b, *data())
    assert all(np.array_equal(u, v) for u, v in zip(a_weights, snapshot(a)))
    assert not np.array_equal(a_weights[0], snapshot(b.get_layer("backbone"))[0])


def test_reuse_cuts_at_a_named_layer_and_from_a_file(tmp_path):
    a = source_model()
    path = tmp_path / "a.keras"
    a.save(path)
    b = reuse(str(path), 3, cut_at="hidden1")
    assert [layer.name for layer in b.get_layer("backbone").layers][-1] == "hidden1"
    assert b.output.shape[-1] == 3
    with pytest.raises(TransferkitError, match="no layer 'hiden1'.*did you mean 'hidden1'"):
        reuse(a, 3, cut_at="hiden1")


def _walk(model):
    from transferkit._walk import iter_layers

    return iter_layers(model)


@pytest.mark.slow  # end to end, ~30 s: `pytest -m slow`
def test_digits_demo_writes_a_run_of_its_largest_size(tmp_path):
    from transferkit.workflows.transfer_demo import transfer_demo

    lines = []
    out = tmp_path / "demo"
    results = transfer_demo(out, sizes=(20, 200), seeds=2, echo=lines.append)
    # Stated floors (seeds 0, 1): at 200 images both reach 95% on B's test
    # images, A 95% on its own.
    assert results["a_test_accuracy"] >= 0.95
    assert results["train_size"] == 200
    assert results["scratch"]["accuracy"] >= 0.95
    assert results["on_a"]["accuracy"] >= 0.95
    assert any("from scratch" in line for line in lines)
    names = {p.name for p in out.iterdir()}
    assert {"model_a.keras", "model_b_scratch.keras", "model_b_on_a.keras", "metrics.json",
            "config.json", "curves_b_on_a.png", "history_b_on_a.json"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["on_a"]["accuracy"] == pytest.approx(results["on_a"]["accuracy"])
    assert metrics["on_a"]["accuracy"] == pytest.approx(metrics["table"][-1]["on_a"]["accuracies"][0])
    assert (out / "curves_b_on_a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reloaded = keras.saving.load_model(out / "model_b_on_a.keras")
    assert reloaded.output.shape[-1] == 1


def test_digits_demo_reports_both_variants_for_every_size_and_seed():
    from transferkit.workflows.transfer_demo import transfer_demo

    lines = []
    # Reduced: two seeds, two sizes, one epoch per phase (~15 s).
    results = transfer_demo(None, sizes=(30, 10), seeds=2, seed=3, epochs=(1, 1),
                            echo=lines.append)
    assert results["seeds"] == [3, 4]
    assert [row["train_size"] for row in results["table"]] == [10, 30]
    for row in results["table"]:
        for variant in ("scratch", "on_a"):
            accuracies = row[variant]["accuracies"]
            assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
            assert row[variant]["mean"] == pytest.approx(np.mean(accuracies))
            assert row[variant]["std"] == pytest.approx(np.std(accuracies))
        gains = np.subtract(row["on_a"]["accuracies"], row["scratch"]["accuracies"])
        assert row["gain"] == pytest.approx(gains.mean())
        assert row["on_a_better"] == (gains > 0).sum() and row["on_a_worse"] == (gains < 0).sum()
    printed = [line.split()[0] for line in lines if line.lstrip()[:3] in ("10 ", "30 ")]
    assert printed == ["10", "30"]
    assert any("unchanged" in line for line in lines)  # A's weights, checked inside


def test_demo_verdict_names_the_sizes_where_reuse_pays_and_explains_when_none_does():
    from transferkit.workflows.transfer_demo import table_row as _row
    from transferkit.workflows.transfer_demo import verdict_lines

    table = [_row(20, [0.8, 0.9, 0.85], [0.9, 0.95, 0.9]),  # better in every seed
             _row(200, [0.99, 0.98, 1.0], [0.99, 0.99, 0.99])]  # 1 better, 1 worse: a tie
    lines = verdict_lines(table, 3)
    assert lines == ["Reuse pays at n = 20."]
    lines = verdict_lines([_row(20, [0.9, 0.9, 0.9], [0.8, 0.85, 0.95])], 3)
    assert lines[0] == "Reuse costs accuracy at n = 20."
    assert "does not pay" in lines[1]
    assert "noise" in verdict_lines(table[:1], 1)[0]  # one seed decides nothing


def test_demo_refuses_bad_classes_sizes_seeds_and_an_occupied_folder(tmp_path):
    from transferkit.workflows.transfer_demo import transfer_demo

    with pytest.raises(TransferkitError, match="two different digits"):
        transfer_demo(None, classes=(5, 5))
    with pytest.raises(TransferkitError, match="train sizes"):
        transfer_demo(None, train_size=5000)
    with pytest.raises(TransferkitError, match="train sizes"):
        transfer_demo(None, sizes=(20, 9))
    with pytest.raises(TransferkitError, match="train sizes"):
        transfer_demo(None, sizes=())
    with pytest.raises(TransferkitError, match="seeds"):
        transfer_demo(None, seeds=0)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(TransferkitError, match="not empty"):
        transfer_demo(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
