import json
import math

import keras
import numpy as np
import pytest
from keras import ops

from transferkit import TransferkitError
from transferkit.optim.optimizers import discriminative, get_optimizer
from transferkit.optim.schedules import (
    MomentumScheduler,
    OneCycle,
    OneCycleMomentum,
    PowerDecay,
    Schedule,
    describe,
    get_schedule,
)

# Keras schedules and callbacks only: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends

STEPS = np.arange(0, 260, 3)


def curve(schedule, steps=STEPS):
    return np.array([float(ops.convert_to_numpy(schedule(int(step)))) for step in steps])


def build(spec, learning_rate=1e-2, total_steps=200):
    return get_schedule(spec).build(learning_rate, total_steps)


# --- Each schedule against its formula -----------------------------------------

def test_power_is_lr0_over_one_plus_step_over_s_to_the_c():
    parts = build("power:s=7,c=1.5")
    np.testing.assert_allclose(curve(parts.learning_rate), 1e-2 / (1 + STEPS / 7) ** 1.5, rtol=1e-5)
    assert parts.callbacks == []


def test_power_and_exponential_default_s_from_the_total_steps():
    power = build("power", total_steps=500).learning_rate
    np.testing.assert_allclose(curve(power), 1e-2 / (1 + STEPS / 50), rtol=1e-5)
    exponential = build("exponential", total_steps=500).learning_rate
    np.testing.assert_allclose(curve(exponential), 1e-2 * 0.1 ** (STEPS / 500), rtol=1e-5)


def test_exponential_is_lr0_times_rate_to_the_step_over_s():
    parts = build("exponential:s=40,rate=0.5")
    assert isinstance(parts.learning_rate, keras.optimizers.schedules.ExponentialDecay)
    np.testing.assert_allclose(curve(parts.learning_rate), 1e-2 * 0.5 ** (STEPS / 40), rtol=1e-5)


def test_piecewise_holds_each_value_up_to_its_boundary():
    parts = build("piecewise:boundaries=30;90,values=1e-3;1e-4;1e-5")
    assert isinstance(parts.learning_rate, keras.optimizers.schedules.PiecewiseConstantDecay)
    expected = np.array([1e-3, 1e-4, 1e-5])[np.searchsorted([30, 90], STEPS, side="left")]
    np.testing.assert_allclose(curve(parts.learning_rate), expected, rtol=1e-6)
    assert curve(parts.learning_rate, [30, 31, 90, 91]).tolist() == pytest.approx(
        [1e-3, 1e-4, 1e-4, 1e-5])


@pytest.mark.parametrize("warmup", [0.0, 0.1])
def test_cosine_warms_up_linearly_then_decays_to_alpha(warmup):
    total, alpha = 200, 0.05
    parts = build(f"cosine:warmup={warmup},alpha={alpha}", total_steps=total)
    assert isinstance(parts.learning_rate, keras.optimizers.schedules.CosineDecay)
    w = round(warmup * total)
    decay = np.minimum(np.maximum(STEPS - w, 0), total - w) / (total - w)
    expected = 1e-2 * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * decay)) + alpha)
    if w:
        expected = np.where(STEPS < w, 1e-2 * STEPS / w, expected)
    np.testing.assert_allclose(curve(parts.learning_rate), expected, rtol=1e-5, atol=1e-10)
    assert curve(parts.learning_rate, [total])[0] == pytest.approx(alpha * 1e-2, rel=1e-5)


def test_one_cycle_goes_up_back_down_then_far_below_the_start():
    total, lr0, peak, end = 200, 1e-3, 1e-2, 2e-6
    schedule = build(f"1cycle:max_lr={peak},final_lr={end},tail=0.2", lr0, total).learning_rate
    assert isinstance(schedule, OneCycle)
    half = 0.8 * total / 2  # 80 steps up, 80 down, the last 40 below lr0
    expected = np.interp(STEPS, [0, half, 2 * half, total], [lr0, peak, lr0, end])
    np.testing.assert_allclose(curve(schedule), expected, rtol=1e-5)
    assert curve(schedule, [0, 80, 160, 200, 10_000]).tolist() == pytest.approx(
        [lr0, peak, lr0, end, end], rel=1e-5)


def test_one_cycle_defaults_peak_at_ten_times_and_end_at_a_hundredth_of_lr0():
    schedule = build("1cycle", 1e-3, total_steps=100).learning_rate
    expected = np.interp(STEPS, [0, 45, 90, 100], [1e-3, 1e-2, 1e-3, 1e-5])
    np.testing.assert_allclose(curve(schedule), expected, rtol=1e-5)


def test_one_cycle_momentum_runs_high_low_high_against_the_rate():
    momentum = OneCycleMomentum(200, low=0.8, high=0.9, tail=0.2)
    expected = np.interp(STEPS, [0, 80, 160, 200], [0.9, 0.8, 0.9, 0.9])
    np.testing.assert_allclose([momentum(int(s)) for s in STEPS], expected, rtol=1e-12)


def test_plateau_is_a_callback_on_a_constant_rate():
    parts = build("plateau:factor=0.2,patience=2,min_lr=1e-5,monitor=loss")
    assert parts.learning_rate == 1e-2
    (callback,) = parts.callbacks
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.factor, callback.patience, callback.min_lr, callback.monitor) == (
        0.2, 2, 1e-5, "loss")


def test_plateau_watches_the_metric_build_is_given_unless_the_spec_names_one():
    assert build("plateau").callbacks[0].monitor == "val_loss"
    assert get_schedule("plateau").build(1e-3, monitor="loss").callbacks[0].monitor == "loss"
    spec = get_schedule("plateau:monitor=val_accuracy")
    assert spec.build(1e-3, monitor="loss").callbacks[0].monitor == "val_accuracy"


def test_plateau_reduces_the_rate_when_the_loss_stops_improving():
    parts = build("plateau:factor=0.5,patience=1,monitor=loss", learning_rate=1e-3)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(get_optimizer("sgd", parts.learning_rate), "mse")
    # Zero targets and inputs: the loss is 0 and cannot improve.
    history = model.fit(np.zeros((4, 1)), np.zeros((4, 1)), epochs=3, verbose=0,
                        callbacks=parts.callbacks)
    # Logged: the rate each epoch trained at; halved after epochs 2 and 3.
    assert history.history["learning_rate"] == pytest.approx([1e-3, 1e-3, 5e-4])
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(2.5e-4)


def test_constant_is_the_rate_itself():
    assert get_schedule(None).build(3e-4) == (3e-4, [])
    assert get_schedule("none").name == "constant"


# --- 1cycle's momentum, in training --------------------------------------------

def linear_loss(y_true, y_pred):
    # d loss / d kernel = mean(x) = 1 for x = 1: every step's gradient is 1.
    return ops.mean(y_pred)


def train_and_record(optimizer, callbacks, steps):
    """Trains a 1x1 kernel one step per batch.

    Returns its value after each step, the model, and how many variables the
    optimizer had before training.
    """
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros", name="unit")])
    model.compile(optimizer, loss=linear_loss)
    optimizer.build(model.trainable_variables)
    state = len(optimizer.variables)
    values = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            values.append(float(ops.convert_to_numpy(self.model.weights[0])[0, 0]))

    model.fit(np.ones((steps, 1), "float32"), np.zeros((steps, 1), "float32"), batch_size=1,
              shuffle=False, verbose=0, callbacks=[*callbacks, Record()])
    return np.array(values), model, state


def sgd_path(rates, momenta, nesterov=False):
    """SGD with momentum on a gradient of 1, as Keras writes it."""
    w = velocity = 0.0
    path = []
    for lr, mu in zip(rates, momenta):
        velocity = mu * velocity - lr
        w += mu * velocity - lr if nesterov else velocity
        path.append(w)
    return np.array(path)


@pytest.mark.parametrize("nesterov, multiplier", [(False, 1.0), (True, 0.5)])
def test_one_cycle_cycles_sgd_momentum_at_every_step(nesterov, multiplier):
    steps = 20
    parts = build("1cycle:max_lr=0.1,min_momentum=0.5,max_momentum=0.95",
                  learning_rate=0.01, total_steps=steps)
    optimizer = get_optimizer("sgd", parts.learning_rate, momentum=0.9, nesterov=nesterov)
    if multiplier != 1.0:
        optimizer = discriminative(optimizer, {"unit/": multiplier})

    path, model, state = train_and_record(optimizer, parts.callbacks, steps)

    rates = multiplier * curve(parts.learning_rate, range(steps))
    momenta = [OneCycleMomentum(steps, low=0.5, high=0.95)(k) for k in range(steps)]
    np.testing.assert_allclose(path, sgd_path(rates, momenta, nesterov), rtol=1e-5)
    # A momentum fixed at 0.9 would have gone elsewhere.
    assert not np.allclose(path, sgd_path(rates, [0.9] * steps, nesterov), rtol=1e-3)
    np.testing.assert_allclose(parts.callbacks[0].history, momenta, rtol=1e-12)
    # After training the optimizer has its own momentum back, and no extra state.
    assert model.optimizer.momentum == 0.9
    assert len(model.optimizer.variables) == state


def test_one_cycle_cycles_adam_beta_1():
    steps = 12
    parts = build("1cycle:min_momentum=0.6", learning_rate=0.01, total_steps=steps)
    path, model, _ = train_and_record(get_optimizer("adam", parts.learning_rate),
                                      parts.callbacks, steps)

    rates = curve(parts.learning_rate, range(steps))
    betas = [OneCycleMomentum(steps, low=0.6)(k) for k in range(steps)]

    def adam_path(betas):
        # Keras' Adam on a gradient of 1, with beta_1 read at each step.
        w = m = v = 0.0
        path = []
        for t, (lr, b1) in enumerate(zip(rates, betas), start=1):
            alpha = lr * math.sqrt(1 - 0.999 ** t) / (1 - b1 ** t)
            m += (1 - m) * (1 - b1)
            v += (1 - v) * (1 - 0.999)
            w -= alpha * m / (math.sqrt(v) + 1e-7)
            path.append(w)
        return np.array(path)

    np.testing.assert_allclose(path, adam_path(betas), rtol=1e-5)
    assert not np.allclose(path, adam_path([0.9] * steps), rtol=1e-3)
    assert model.optimizer.beta_1 == 0.9


def test_a_model_trained_with_one_cycle_saves_and_reloads(tmp_path):
    parts = build("1cycle", learning_rate=0.01, total_steps=8)
    _, model, _ = train_and_record(get_optimizer("sgd:momentum=0.9", parts.learning_rate),
                                   parts.callbacks, 8)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras",
                                     custom_objects={"linear_loss": linear_loss})
    schedule = loaded.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "OneCycle"
    assert schedule["config"] == parts.learning_rate.get_config()
    assert loaded.optimizer.momentum == 0.9


def test_momentum_scheduler_checks_its_schedule():
    with pytest.raises(TransferkitError, match="a function of the step, got 0.9"):
        MomentumScheduler(0.9)
    optimizer = get_optimizer("sgd:momentum=0.9", 0.01)
    with pytest.raises(TransferkitError, match=r"gave 1.5; use values in \[0, 1\)"):
        train_and_record(optimizer, [MomentumScheduler(lambda step: 1.5)], 2)


@pytest.mark.parametrize("spec, message", [
    ("adagrad", "Adagrad has no momentum or beta_1 to cycle"),
    ("sgd", r"SGD has momentum=0, so it has no momentum to cycle: give it one "
            r"\(e.g. 'sgd:momentum=0.9'\), or use '1cycle:cycle_momentum=false'"),
])
def test_one_cycle_says_when_the_optimizer_has_no_momentum_to_cycle(spec, message):
    parts = build("1cycle", learning_rate=0.01, total_steps=4)
    with pytest.raises(TransferkitError, match=message):
        train_and_record(get_optimizer(spec, parts.learning_rate), parts.callbacks, 4)
    # Without the momentum cycle, any optimizer will do.
    parts = build("1cycle:cycle_momentum=false", learning_rate=0.01, total_steps=4)
    assert parts.callbacks == []


# --- Specs ---------------------------------------------------------------------

SPECS = [
    "constant",
    "power:s=1000,c=1",
    "exponential:s=2000,rate=0.5",
    "piecewise:boundaries=100;200,values=0.001;0.0001;1e-05",
    "plateau:factor=0.5,patience=3,monitor=val_accuracy",
    "cosine:warmup=0.05,alpha=0.01",
    "1cycle:max_lr=0.01,tail=0.05,cycle_momentum=false",
]


@pytest.mark.parametrize("spec", SPECS)
def test_specs_round_trip_through_describe_json_and_strings(spec):
    schedule = get_schedule(spec)
    described = json.loads(json.dumps(describe(spec)))
    assert get_schedule(**described) == schedule
    assert get_schedule(described) == schedule
    assert get_schedule(str(schedule)) == schedule


def test_describe_fills_in_the_defaults():
    assert describe("1cycle:max_lr=1e-2") == {
        "name": "1cycle", "max_lr": 0.01, "final_lr": None, "tail": 0.1, "cycle_momentum": True,
        "max_momentum": 0.95, "min_momentum": 0.85}
    assert str(get_schedule("power", s=1000)) == "power:s=1000,c=1"
    assert get_schedule("piecewise", boundaries=[10], values=(1e-3, 1e-4)) == get_schedule(
        "piecewise:boundaries=10,values=1e-3/1e-4")


@pytest.mark.parametrize("spec, message", [
    ("cosin", r"Unknown schedule 'cosin' \(did you mean 'cosine'\?\); use one of constant, "
              r"power, exponential, piecewise, plateau, cosine, 1cycle\."),
    ("power:s=100,k=2", r"Schedule 'power' has no parameter 'k'; valid: s, c\."),
    ("constant:s=1", r"Schedule 'constant' has no parameter 's'; valid: none\."),
    ("power:s=-5", r"s=-5 should be a number of steps > 0"),
    ("exponential:rate=2", r"rate=2 should be a number in \(0, 1\)"),
    ("piecewise:boundaries=200;100,values=1;2;3", r"boundaries=200;100 should be increasing"),
    ("piecewise:boundaries=100,values=1e-3", r"needs one more value than boundaries"),
    ("piecewise:values=1e-3", r"Schedule 'piecewise' needs boundaries"),
    ("plateau:factor=1.5", r"factor=1.5 should be a number in \(0, 1\)"),
    ("cosine:warmup=1", r"warmup=1 should be a fraction of the steps in \[0, 1\)"),
    ("1cycle:cycle_momentum=maybe", r"cycle_momentum=maybe should be true or false"),
    ("1cycle:min_momentum=0.95,max_momentum=0.9", r"min_momentum should not exceed"),
])
def test_bad_schedule_specs_say_what_is_wrong(spec, message):
    with pytest.raises(TransferkitError, match=message):
        get_schedule(spec)


def test_build_says_what_it_needs():
    with pytest.raises(TransferkitError, match=r"'cosine' needs total_steps \(epochs \* steps"):
        get_schedule("cosine").build(1e-3)
    with pytest.raises(TransferkitError, match=r"needs total_steps .*, or give s=STEPS"):
        get_schedule("power").build(1e-3)
    with pytest.raises(TransferkitError, match="need final_lr <= 0.1 <= max_lr"):
        get_schedule("1cycle:max_lr=0.01").build(0.1, total_steps=100)
    with pytest.raises(TransferkitError, match="learning rate must be a positive number"):
        get_schedule("constant").build(0.0)
    with pytest.raises(TransferkitError, match="total_steps must be an int >= 1"):
        get_schedule("cosine").build(1e-3, total_steps=0)
    assert get_schedule("power:s=10").needs_total_steps() is False
    assert isinstance(get_schedule("power:s=10"), Schedule)


def test_power_decay_serializes_for_saving():
    schedule = PowerDecay(0.1, 50, power=2.0)
    again = keras.optimizers.schedules.deserialize(
        json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule))))
    assert isinstance(again, PowerDecay)
    np.testing.assert_allclose(curve(again), curve(schedule))
