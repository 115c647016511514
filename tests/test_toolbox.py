"""The toolbox through the recipe and the command line: optimizer specs, schedules,
per-block rates, inserted dropout, constraints, the LR finder, all recorded in config.json."""

import json
import os

import keras
import numpy as np
import pytest
from helpers import images, make_folder, run, tiny_model

from transferkit.errors import TransferkitError
from transferkit.training.recipe import FineTuner, Phase
from transferkit.optim.schedules import OneCycle

TINY = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
        "--batch-size", "8", "--no-augment"]


def test_a_phase_takes_optimizer_specs_schedules_and_records_them():
    x, y = images(30)
    val = images(10, seed=1)
    model = tiny_model()
    phase = Phase(3, 1e-3, "all", "sgd:momentum=0.9,nesterov=true", name="tune",
                  schedule="1cycle:max_lr=1e-2", lr_decay=0.5)
    tuner = FineTuner([phase], batch_size=8, patience=None, seed=0, verbose=0,
                      blocks=["conv1", "conv2"])
    tuner.fit(model, x, y, validation_data=val)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "DiscriminativeSGD"
    assert optimizer.nesterov and optimizer.get_config()["momentum"] == pytest.approx(0.9)
    # The per-epoch rate is the 1cycle curve at each epoch's last step (4 batches of 8).
    curve = OneCycle(1e-3, 1e-2, total_steps=12, final_learning_rate=1e-5)
    expected = [float(curve(step)) for step in (4, 8, 12)]
    np.testing.assert_allclose(tuner.history_["learning_rate"], expected, rtol=1e-5)
    record = tuner.phases_[0]
    assert record["optimizer"] == {"name": "sgd", "momentum": 0.9, "nesterov": True}
    assert record["schedule"]["name"] == "1cycle" and record["schedule"]["max_lr"] == 0.01
    assert record["lr_decay"] == 0.5
    # The head trains at the full rate, the backbone's layers slower.
    head = model.get_layer("head").kernel
    conv = model.get_layer("backbone").get_layer("conv2").kernel
    assert optimizer.learning_rate_multiplier(head) == 1
    assert optimizer.learning_rate_multiplier(conv) < 1


def test_plateau_scheduling_lowers_the_rate_and_the_history_shows_it():
    x, y = images(30)
    val = images(10, seed=1)
    tuner = FineTuner([Phase(3, 1e-9, "none", schedule="plateau:factor=0.5,patience=1")],
                      batch_size=8, patience=None, seed=0, verbose=0)
    tuner.fit(tiny_model(), x, y, validation_data=val)
    # At 1e-9 nothing improves: after the second epoch without progress (patience 1) the
    # rate halves; the history shows the rate each epoch trained with.
    np.testing.assert_allclose(tuner.history_["learning_rate"], [1e-9, 1e-9, 5e-10],
                               rtol=1e-5)


@pytest.mark.parametrize("kwargs, words", [
    ({"optimizer": "sgd:momentun=0.9"}, "momentum"),
    ({"optimizer": "adamax"}, "Unknown optimizer"),
    ({"schedule": "2cycle"}, "1cycle"),
    ({"schedule": "power:c=x"}, "power"),
    ({"lr_decay": 2.0}, "lr_decay"),
])
def test_bad_phase_specs_are_one_line_errors(kwargs, words):
    with pytest.raises(TransferkitError, match=words) as error:
        Phase(1, 1e-3, **kwargs)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("toolbox") / "data", n=8)


def test_train_records_the_toolbox_and_the_model_keeps_it(data, tmp_path, capsys):
    import transferkit

    out = tmp_path / "run"
    assert run("train", data, "--out", out, *TINY, "--no-report", "--epochs", "1,1",
               "--unfreeze", "blocks:2",
               "--optimizer", "adamw:weight_decay=1e-4", "--schedule", "cosine:warmup=0.2",
               "--lr-decay", "0.7", "--dropout-after", "blocks", "--spatial-dropout",
               "--max-norm", "3") == 0
    log = capsys.readouterr().out
    assert "random in training: plain path" in log  # dropout inside the backbone: no cache
    arguments = json.loads((out / "config.json").read_text())["arguments"]
    assert arguments["optimizer"] == "adamw:weight_decay=1e-4"
    assert arguments["schedule"] == "cosine:warmup=0.2"
    assert arguments["lr_decay"] == 0.7 and arguments["dropout_after"] == "blocks"
    assert arguments["dropout_kind"] == "spatial"
    assert arguments["kernel_constraint"] == "max_norm:3"
    model = transferkit.load_model(out / "model.keras")
    backbone = model.get_layer("backbone")
    inserted = [layer for layer in backbone.layers if layer.name.startswith("dropout_after_")]
    assert inserted and all(isinstance(layer, keras.layers.SpatialDropout2D)
                            for layer in inserted)
    assert all(layer.rate == pytest.approx(0.1) for layer in inserted)
    head = model.get_layer("head")
    assert head.kernel.constraint is not None and head.kernel_constraint is not None
    norms = np.linalg.norm(keras.ops.convert_to_numpy(head.kernel), axis=0)
    assert np.all(norms <= 3 + 1e-5)  # trained, so projected
    assert run("audit", out / "model.keras", "--max-rows", "0") == 0
    assert "max_norm" in capsys.readouterr().out.replace("MaxNorm", "max_norm")


def test_lr_find_prints_a_rate_writes_the_plot_and_bad_input_exits_2(data, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert run("lr-find", data, *TINY, "--steps", "20", "--plot", plot) == 0
    out = capsys.readouterr().out
    assert "Suggested learning rate:" in out and plot.stat().st_size > 1000
    rate = float(out.split("Suggested learning rate: ")[1].split()[0])
    assert 1e-8 < rate < 10
    bad = tmp_path / "bad.png"
    assert run("lr-find", data, *TINY, "--start", "1", "--end", "0.1", "--plot", bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "start" in err
    assert not bad.exists()
    assert run("lr-find", data, *TINY, "--head", "logreg", "--plot", bad) == 2
    assert "no learning rate" in capsys.readouterr().err
    assert not os.path.exists(bad)
