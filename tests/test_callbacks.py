"""The recipe's callbacks in a user's own `model.fit`: phases, their rates, the best weights."""

import keras
import numpy as np
import pytest
from conftest import snapshot

from transferkit.errors import TransferkitError
from transferkit.models.freezing import freeze
from transferkit.models.heads import default_loss, default_metrics, output_head
from transferkit.training.callbacks import BestWeights, PhaseSwitch, recompile
from transferkit.training.recipe import Phase


def net(seed=0):
    """A small model with a nested `"backbone"`, as `transferkit.build` makes them."""
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="hidden1"),
        keras.layers.Dense(8, activation="relu", name="hidden2"),
    ], name="backbone")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(backbone(inputs))
    return keras.Model(inputs, outputs, name="net")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    return x, y


class Recorder(keras.callbacks.Callback):
    """Records, independently of transferkit, each epoch's optimizer and rate
    (at its start), and its weights and logs (at its end)."""

    def __init__(self):
        super().__init__()
        self.rates, self.optimizers, self.weights, self.logs = [], [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        self.rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        self.optimizers.append(type(optimizer).__name__)

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(snapshot(self.model))
        self.logs.append(dict(logs))


def equal(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


BACKBONE_PARAMS = 6 * 16 + 16 + 16 * 8 + 8


def test_two_phases_in_one_fit_freeze_then_unfreeze_at_the_phases_rates():
    model = net()
    model.compile(keras.optimizers.Adam(0.5), "binary_crossentropy", metrics=["accuracy"])
    start = snapshot(model)
    switch = PhaseSwitch([Phase(3, 1e-2, "none", name="head"),
                          Phase(4, 1e-3, "all", optimizer="sgd:momentum=0.9")])
    recorder = Recorder()
    run = model.fit(*data(), epochs=7, batch_size=16, validation_data=data(32, seed=1),
                    callbacks=[switch, recorder], verbose=0)

    backbone = [i for i, v in enumerate(model.weights) if "hidden" in v.path]
    head = [i for i, v in enumerate(model.weights) if "head" in v.path]
    assert len(backbone) == 4 and len(head) == 2
    for epoch in range(3):  # frozen: bit-identical; the head trains
        assert all(np.array_equal(recorder.weights[epoch][i], start[i]) for i in backbone)
        assert not np.array_equal(recorder.weights[epoch][head[0]], start[head[0]])
    for epoch in range(3, 7):  # unfrozen: every epoch changes the backbone
        before = recorder.weights[epoch - 1]
        assert all(not np.array_equal(recorder.weights[epoch][i], before[i]) for i in backbone)
    assert recorder.rates == pytest.approx([1e-2] * 3 + [1e-3] * 4)
    assert recorder.optimizers == ["Adam"] * 3 + ["SGD"] * 4
    assert model.optimizer.momentum == 0.9
    assert switch.phase == 1
    assert [s.trainable_params for s in switch.summaries.values()] == [0, BACKBONE_PARAMS]
    # The loss and metrics survive the recompiles, and every epoch logs them.
    config = model.get_compile_config()
    assert (config["loss"], config["metrics"]) == ("binary_crossentropy", ["accuracy"])
    assert all(len(values) == 7 for values in run.history.values())
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_one_fit_with_phase_switch_trains_like_one_fit_per_phase():
    x, y = data()
    val = data(32, seed=1)
    phases = [Phase(2, 1e-2, "none"), Phase(3, 1e-3, "all", optimizer="sgd:momentum=0.9")]
    args = dict(batch_size=16, shuffle=False, validation_data=val, verbose=0)

    one = net()
    one.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    run = one.fit(x, y, epochs=5, callbacks=[PhaseSwitch(phases)], **args)

    apart, history = net(), {}
    for phase in phases:  # what FineTuner does, without its early stopping and cache
        freeze(apart, phase.unfreeze)
        optimizer, _ = phase.build_optimizer(apart, 4)
        apart.compile(optimizer, "binary_crossentropy", metrics=["accuracy"])
        for key, values in apart.fit(x, y, epochs=phase.epochs, **args).history.items():
            history.setdefault(key, []).extend(values)
    for a, b in zip(snapshot(one), snapshot(apart)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert run.history.keys() == history.keys()
    for key in history:
        np.testing.assert_allclose(run.history[key], history[key], rtol=1e-5, atol=1e-6)


def test_best_weights_restores_the_best_epoch_of_a_one_fit_recipe():
    # Phase 2 at an absurd rate wrecks the model: the best epoch is in phase 1.
    model = net()
    model.compile("adam", "binary_crossentropy")
    val = data(32, seed=1)
    switch = PhaseSwitch([Phase(4, 1e-2, "none"), Phase(3, 9.0, "all", optimizer="sgd")])
    recorder, best = Recorder(), BestWeights("val_loss")
    model.fit(*data(), epochs=7, batch_size=16, validation_data=val,
              callbacks=[switch, recorder, best], verbose=0)
    losses = np.array([logs["val_loss"] for logs in recorder.logs], dtype=float)
    epoch = int(np.nanargmin(losses))
    assert epoch < 4, "phase 2 should have been worse"
    assert (best.best_epoch, best.best) == (epoch, losses[epoch])
    assert equal(snapshot(model), recorder.weights[epoch])
    assert not equal(snapshot(model), recorder.weights[-1])
    assert model.evaluate(*val, verbose=0) == pytest.approx(losses[epoch], rel=1e-5)


def test_best_weights_carry_over_fits_and_the_file_holds_them(tmp_path):
    model = net()
    path = tmp_path / "made" / "best.weights.h5"
    x, y = data()
    val = data(32, seed=1)
    best, recorder = BestWeights("val_loss", filepath=path), Recorder()
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, epochs=3, validation_data=val, callbacks=[recorder, best], verbose=0)
    first = snapshot(model)
    mtime = path.stat().st_mtime_ns
    model.compile(keras.optimizers.SGD(9.0), "binary_crossentropy")  # a phase that only harms
    model.fit(x, y, epochs=3, validation_data=val, callbacks=[recorder, best], verbose=0)
    losses = [logs["val_loss"] for logs in recorder.logs]
    assert best.best == np.nanmin(np.array(losses, dtype=float)) == min(losses[:3])
    assert equal(snapshot(model), first)
    assert equal(first, recorder.weights[int(np.argmin(losses[:3]))])
    assert path.stat().st_mtime_ns == mtime  # no new best, no new file
    other = net(seed=5)
    other.load_weights(path)
    assert equal(snapshot(other), first)


def test_a_head_fit_then_a_full_fit_restore_the_whole_model(tmp_path):
    # FineTuner's cached phase: a head model sharing the full model's layers,
    # then the full model; the best weights and the file cover both.
    model = net()
    start = snapshot(model.get_layer("backbone"))
    features = keras.Input((8,))
    head = keras.Model(features, model.get_layer("head")(features))
    x, y = data()
    val_x, val_y = data(32, seed=1)
    backbone = model.get_layer("backbone")
    path = tmp_path / "best.weights.h5"
    best = BestWeights("val_loss", filepath=path, full_model=model)
    head.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    head.fit(backbone.predict(x, verbose=0), y, epochs=3, callbacks=[best], verbose=0,
             validation_data=(backbone.predict(val_x, verbose=0), val_y))
    best_head = snapshot(model.get_layer("head"))
    model.compile(keras.optimizers.SGD(9.0), "binary_crossentropy")
    run = model.fit(x, y, epochs=2, validation_data=(val_x, val_y), callbacks=[best], verbose=0)
    assert min(run.history["val_loss"]) > best.best  # the full fit never beat the head's
    assert equal(snapshot(model.get_layer("backbone")), start)  # back to before the full fit
    assert equal(snapshot(model.get_layer("head")), best_head)
    other = net(seed=5)
    other.load_weights(path)  # the whole model's weights, not the head's
    assert equal(snapshot(other), snapshot(model))


def test_a_threshold_no_epoch_beats_leaves_the_last_weights_and_writes_nothing(tmp_path):
    model = net()
    model.compile("adam", "binary_crossentropy")
    path = tmp_path / "best.weights.h5"
    best, recorder = BestWeights("loss", filepath=path, initial_value_threshold=0.0), Recorder()
    model.fit(*data(), epochs=2, callbacks=[recorder, best], verbose=0)
    assert best.best == 0.0 and best.best_epoch is None
    assert equal(snapshot(model), recorder.weights[-1])
    assert not path.exists()


def test_accuracy_is_maximized_and_the_mode_can_be_forced():
    assert BestWeights("val_accuracy").mode == "max"
    assert BestWeights("auc").mode == "max"
    assert BestWeights("val_loss").mode == "min"
    assert BestWeights("val_accuracy", mode="min").mode == "min"
    assert BestWeights("val_accuracy").best == -np.inf


def test_a_plateau_schedule_runs_within_its_phase():
    # min_delta=10: no epoch counts as progress, so the rate halves after each
    # epoch of the phase but its first (whose loss beats the reset's inf).
    model = net()
    model.compile("adam", "binary_crossentropy")
    plateau = "plateau:factor=0.5,patience=1,min_delta=10"
    switch = PhaseSwitch([Phase(2, 1e-2, "none"), Phase(3, 1e-2, "all", schedule=plateau)],
                         monitor="loss")
    recorder = Recorder()
    model.fit(*data(), epochs=5, callbacks=[switch, recorder], verbose=0)
    assert recorder.rates == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2, 5e-3])


def test_a_one_cycle_phase_cycles_and_gives_the_momentum_back():
    model = net()
    model.compile("adam", "binary_crossentropy")
    switch = PhaseSwitch([Phase(1, 1e-2, "none"),
                          Phase(2, 1e-3, "all", optimizer="sgd:momentum=0.9",
                                schedule="1cycle:max_lr=1e-2")])
    recorder = Recorder()
    model.fit(*data(), epochs=3, batch_size=8, callbacks=[switch, recorder], verbose=0)
    assert recorder.rates[1] == pytest.approx(1e-3)
    assert recorder.rates[2] > 1e-3  # the cycle's peak lies in the middle of the phase
    assert model.optimizer.momentum == 0.9 and isinstance(model.optimizer.momentum, float)


def test_recompile_keeps_loss_and_metrics_and_takes_the_new_trainable_state():
    model = net()
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.get_layer("backbone").trainable = False
    recompile(model, keras.optimizers.SGD(0.1))
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.built
    assert model.get_compile_config()["metrics"] == ["accuracy"]
    start = snapshot(model.get_layer("backbone"))
    model.fit(*data(), epochs=1, verbose=0)
    assert equal(snapshot(model.get_layer("backbone")), start)


@pytest.mark.parametrize("make, match", [
    (lambda: BestWeights(mode="up"), "mode must be 'auto', 'min' or 'max', got 'up'"),
    (lambda: BestWeights(monitor=""), "monitor must be a metric name"),
    (lambda: BestWeights(filepath="best.h5"), r"must end in \.weights\.h5, got 'best\.h5'"),
    (lambda: BestWeights(filepath=3), "filepath must be a path or None, got 3"),
    (lambda: BestWeights(initial_value_threshold="low"), "initial_value_threshold"),
    (lambda: BestWeights(full_model="net"), "full_model must be a keras.Model"),
    (lambda: PhaseSwitch([]), "non-empty list of Phase"),
    (lambda: PhaseSwitch([{"epochs": 2}]), "non-empty list of Phase"),
    (lambda: PhaseSwitch([Phase(0, 1e-3)]), "0 epochs"),
    (lambda: PhaseSwitch([Phase(1, 1e-3)], batchnorm="on"), "batchnorm must be"),
    (lambda: recompile(net(), "sgd"), "needs a compiled keras.Model"),
])
def test_arguments_are_checked(make, match):
    with pytest.raises(TransferkitError, match=match):
        make()


def test_a_monitor_fit_never_logs_is_an_error():
    model = net()
    model.compile("adam", "binary_crossentropy")
    with pytest.raises(TransferkitError, match=r"monitor='val_loss' is not among the logged "
                                               r"metrics \(loss\)"):
        model.fit(*data(), epochs=1, callbacks=[BestWeights("val_loss")], verbose=0)


def test_output_head_and_the_defaults_it_gives():
    def model(units, activation):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, activation)])

    assert output_head(model(4, "softmax")) == ("softmax", 4)
    assert output_head(model(2, None)).activation == "linear"
    assert default_loss(model(4, "softmax")) == "sparse_categorical_crossentropy"
    assert default_loss(model(1, "sigmoid")) == "binary_crossentropy"
    assert default_loss(model(1, None)) == "mean_squared_error"
    assert default_metrics(model(3, "sigmoid")) == ["binary_accuracy"]
    assert default_metrics(model(1, "sigmoid")) == ["accuracy"]
    assert default_metrics(model(1, "relu")) == []
    with pytest.raises(TransferkitError, match="Cannot tell the output layer"):
        output_head(keras.Sequential(name="empty"))
