import inspect
import json

import keras
import numpy as np
import pytest
from keras import ops

from transferkit import TransferkitError
from transferkit.optim.optimizer_specs import KERAS_OPTIMIZERS, parameters
from transferkit.optim.optimizers import (
    OPTIMIZERS,
    block_multipliers,
    describe,
    discriminative,
    get_optimizer,
    parse_spec,
)
from transferkit.optim.schedules import PowerDecay

# Keras optimizers only: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def variable(path, value):
    """A variable whose path is `path` ("body/kernel"), as a layer would make it."""
    scope, name = path.split("/")
    with keras.name_scope(scope):
        return keras.Variable(np.asarray(value, "float32"), name=name)


GRADIENTS = (np.array([[2.0, -1.0, 0.5], [0.25, 4.0, -3.0]], "float32"),
             np.array([1.0, -3.0, 0.5], "float32"))


def apply_steps(optimizer, variables, gradients=GRADIENTS, steps=1):
    gradients = [ops.convert_to_tensor(g) for g in gradients]
    for _ in range(steps):
        optimizer.apply(gradients, variables)


# --- Optimizers by name -------------------------------------------------------

@pytest.mark.parametrize("spec, cls, attributes", [
    ("sgd", keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}),
    ("sgd:momentum=0.9,nesterov=true", keras.optimizers.SGD,
     {"momentum": 0.9, "nesterov": True}),
    ("adagrad:initial_accumulator_value=0.2", keras.optimizers.Adagrad,
     {"initial_accumulator_value": 0.2}),
    ("rmsprop:rho=0.8,momentum=0.5", keras.optimizers.RMSprop, {"rho": 0.8, "momentum": 0.5}),
    ("adam:beta_1=0.8,beta_2=0.99,epsilon=1e-6,amsgrad=true", keras.optimizers.Adam,
     {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6, "amsgrad": True}),
    ("nadam:beta_1=0.85", keras.optimizers.Nadam, {"beta_1": 0.85}),
    ("adamw:weight_decay=1e-4", keras.optimizers.AdamW, {"weight_decay": 1e-4}),
    ("Adam: clipnorm = 1", keras.optimizers.Adam, {"clipnorm": 1}),
])
def test_spec_strings_make_the_optimizer_with_its_parameters(spec, cls, attributes):
    optimizer = get_optimizer(spec)
    assert isinstance(optimizer, cls)
    for name, value in attributes.items():
        assert getattr(optimizer, name) == value


def test_parameters_come_as_arguments_too_with_the_learning_rate():
    optimizer = get_optimizer("sgd", 0.05, momentum=0.9, nesterov=True)
    assert (optimizer.momentum, optimizer.nesterov) == (0.9, True)
    assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(0.05)
    # An int is a rate too (Keras wants a float).
    assert float(to_numpy(get_optimizer("adam", 1).learning_rate)) == 1.0


def test_a_schedule_is_a_learning_rate():
    schedule = PowerDecay(0.1, decay_steps=10)
    optimizer = get_optimizer("sgd", learning_rate=schedule)
    assert optimizer.get_config()["learning_rate"]["class_name"] == "PowerDecay"
    assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(0.1)


def test_parse_spec_reads_numbers_booleans_none_and_lists():
    assert parse_spec("x:a=1,b=2.5,c=1e-3,d=true,e=False,f=none,g=1;2,h=val_loss,i=0.5/0.25") == (
        "x", {"a": 1, "b": 2.5, "c": 1e-3, "d": True, "e": False, "f": None, "g": [1, 2],
              "h": "val_loss", "i": [0.5, 0.25]})
    assert parse_spec(" SGD ") == ("sgd", {})


@pytest.mark.parametrize("spec, message", [
    ("sgdd", r"Unknown optimizer 'sgdd' \(did you mean 'sgd'\?\); use one of sgd, adagrad, "
             r"rmsprop, adam, nadam, adamw\."),
    ("sgd:momentun=0.9", r"no parameter 'momentun' \(did you mean 'momentum'\?\); valid: "
                         r"learning_rate, momentum, nesterov, weight_decay, clipnorm"),
    ("adam:momentum=0.9", r"Optimizer 'adam' has no parameter 'momentum'.*beta_1, beta_2, "
                          r"epsilon, amsgrad"),
    ("sgd:nesterov=1", r"nesterov=1 should be true or false"),
    ("sgd:momentum=yes", r"momentum='yes' should be a number"),
    ("sgd:momentum=2", r"Invalid optimizer 'sgd:momentum=2': `momentum` must be a float"),
    ("sgd:momentum", r"write NAME:KEY=VALUE,KEY=VALUE"),
    ("sgd:momentum=0.9,momentum=0.5", r"sets 'momentum' twice"),
    ("", r"Expected a spec string"),
])
def test_bad_specs_say_what_is_wrong_and_what_is_valid(spec, message):
    with pytest.raises(TransferkitError, match=message):
        get_optimizer(spec)


@pytest.mark.parametrize("rate", [0, -1e-3, float("nan"), float("inf"), True, "fast"])
def test_bad_learning_rates_are_refused(rate):
    with pytest.raises(TransferkitError, match="A learning rate must be a positive number"):
        get_optimizer("adam", rate)


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(TransferkitError, match="momentum given both"):
        get_optimizer("sgd:momentum=0.9", momentum=0.5)
    with pytest.raises(TransferkitError, match="learning_rate given both"):
        get_optimizer("sgd:learning_rate=0.1", 0.2)
    with pytest.raises(TransferkitError, match="not with an optimizer object"):
        get_optimizer(keras.optimizers.SGD(), momentum=0.5)


def test_an_optimizer_object_passes_through():
    optimizer = keras.optimizers.RMSprop()
    assert get_optimizer(optimizer) is optimizer


@pytest.mark.parametrize("make", [
    lambda: get_optimizer("sgd:momentum=0.9,nesterov=true", 0.01),
    lambda: get_optimizer("adamw:weight_decay=1e-4,clipnorm=1.5", 3e-4),
    lambda: get_optimizer("rmsprop:rho=0.8", PowerDecay(0.1, 100, power=2.0)),
    lambda: get_optimizer("adam", keras.optimizers.schedules.CosineDecay(1e-3, 50)),
    lambda: discriminative("nadam:beta_1=0.8", {"head/": 1.0, "conv": 0.25}),
])
def test_describe_is_json_and_get_optimizer_recreates_the_optimizer(make):
    optimizer = make()
    described = json.loads(json.dumps(describe(optimizer)))
    again = get_optimizer(**described)

    assert type(again) is type(optimizer)
    assert describe(again) == described
    config, config_again = optimizer.get_config(), again.get_config()
    config.pop("name"), config_again.pop("name")
    assert config_again == config


def test_describe_records_the_algorithm_and_only_changed_general_arguments():
    assert describe("sgd:momentum=0.9") == {
        "name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": False}
    assert describe("adamw:clipnorm=1.0,weight_decay=1e-4") == {
        "name": "adamw", "learning_rate": 0.001, "weight_decay": 1e-4, "beta_1": 0.9,
        "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False, "clipnorm": 1.0}


def test_the_parameter_table_is_the_keras_signatures():
    # Specs are checked without Keras, against a copy of the Keras classes'
    # signatures (optimizer_specs.KERAS_OPTIMIZERS): a Keras release that
    # renames, adds, reorders or re-defaults an argument fails here.
    for name, (class_name, _) in KERAS_OPTIMIZERS.items():
        cls = getattr(keras.optimizers, class_name)
        signature = [(param, p.default) for param, p in
                     inspect.signature(cls.__init__).parameters.items()
                     if param not in ("self", "learning_rate", "name")
                     and p.kind is not p.VAR_KEYWORD]
        assert list(parameters(name).items()) == signature, name
        assert OPTIMIZERS[name] is cls


# --- Discriminative learning rates --------------------------------------------

@pytest.mark.parametrize("rate", [0.1, PowerDecay(0.1, decay_steps=1.0)],
                         ids=["float", "schedule"])
def test_plain_sgd_moves_each_variable_by_minus_rate_times_multiplier_times_gradient(rate):
    body = variable("body/kernel", np.ones((2, 3)))
    head = variable("head/bias", np.ones(3))
    optimizer = discriminative(get_optimizer("sgd", rate), {"body/": 0.25})

    apply_steps(optimizer, [body, head], steps=3)

    # Steps 0, 1, 2 at 0.1 each, or at 0.1 / (1 + step) with the schedule.
    total = 0.3 if isinstance(rate, float) else 0.1 * (1 + 1 / 2 + 1 / 3)
    # float32 weights near 1 hold about 7 significant digits.
    np.testing.assert_allclose(to_numpy(body) - 1, -total * 0.25 * GRADIENTS[0],
                               rtol=1e-6, atol=3e-7)
    np.testing.assert_allclose(to_numpy(head) - 1, -total * 1.0 * GRADIENTS[1],
                               rtol=1e-6, atol=3e-7)


def test_adam_first_step_moves_each_element_by_the_rate_times_its_multiplier():
    multipliers = {"block1/": 0.25, "block2/": 0.5}
    variables = [variable(f"{name}/kernel", np.zeros((2, 3)))
                 for name in ("block1", "block2", "head")]
    optimizer = discriminative(get_optimizer("adam", 1e-2), multipliers)

    apply_steps(optimizer, variables, gradients=[GRADIENTS[0]] * 3)

    # Adam's first update is -lr * g / (|g| + epsilon'): -lr * sign(g) per element.
    for v, multiplier in zip(variables, (0.25, 0.5, 1.0)):
        np.testing.assert_allclose(to_numpy(v), -1e-2 * multiplier * np.sign(GRADIENTS[0]),
                                   rtol=1e-4)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_updates_a_variable_as_it_would_at_the_multiplied_rate(name):
    spec = {"sgd": "sgd:momentum=0.9,nesterov=true", "rmsprop": "rmsprop:momentum=0.5",
            "adamw": "adamw:weight_decay=0.1"}.get(name, name)
    slow, fast = variable("body/kernel", np.ones((2, 3))), variable("head/bias", np.ones(3))
    optimizer = discriminative(get_optimizer(spec, 0.1), {"body": 0.3})
    apply_steps(optimizer, [slow, fast], steps=3)

    # References: the plain optimizer at 0.1 * 0.3 and at 0.1.
    reference_slow, reference_fast = keras.Variable(np.ones((2, 3), "float32")), \
        keras.Variable(np.ones(3, "float32"))
    apply_steps(get_optimizer(spec, 0.1 * 0.3), [reference_slow], [GRADIENTS[0]], steps=3)
    apply_steps(get_optimizer(spec, 0.1), [reference_fast], [GRADIENTS[1]], steps=3)

    np.testing.assert_allclose(to_numpy(slow), to_numpy(reference_slow), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(fast), to_numpy(reference_fast), rtol=1e-5)
    assert not np.allclose(to_numpy(slow), 1.0)


def test_decoupled_weight_decay_follows_the_multiplier():
    slow = variable("body/kernel", np.full((2, 3), 2.0))
    fast = variable("head/bias", np.full(3, 2.0))
    optimizer = discriminative(get_optimizer("adamw:weight_decay=0.5", 0.1), {"body/": 0.2})
    # A zero gradient leaves Adam's own step at 0: only the decay moves them.
    apply_steps(optimizer, [slow, fast], gradients=[np.zeros((2, 3), "float32"),
                                                    np.zeros(3, "float32")])
    np.testing.assert_allclose(to_numpy(slow), 2.0 * (1 - 0.5 * 0.1 * 0.2), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(fast), 2.0 * (1 - 0.5 * 0.1), rtol=1e-6)


def two_layer_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="body")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))


def test_one_training_step_of_a_linear_model_matches_the_closed_form_gradient():
    model = two_layer_model()
    model.compile(discriminative("sgd", {"body/": 0.25}), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    w1, b1, w2, b2 = (to_numpy(v) for v in model.trainable_variables)

    # The gradient of mean((x w1 + b1) w2 + b2 - y)^2, by hand.
    hidden = x @ w1 + b1
    d_out = 2 * ((hidden @ w2 + b2) - y) / len(x)
    d_hidden = d_out @ w2.T
    gradients = [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_out, d_out.sum(0)]
    before = [w1, b1, w2, b2]

    model.train_on_batch(x, y)

    lr = 0.01  # SGD's default
    for v, old, gradient, multiplier in zip(model.trainable_variables, before, gradients,
                                            (0.25, 0.25, 1.0, 1.0)):
        # Updates of ~1e-3 on float32 weights of ~0.5: good to ~1e-7.
        np.testing.assert_allclose(to_numpy(v) - old, -lr * multiplier * gradient,
                                   rtol=1e-4, atol=1e-7)


def test_multipliers_are_searched_in_paths_first_match_wins():
    model = two_layer_model()
    optimizer = discriminative("adam", {"body/kernel": 0.1, "body": 0.5, "": 0.75})
    optimizer.build(model.trainable_variables)
    assert [optimizer.learning_rate_multiplier(v) for v in model.trainable_variables] == [
        0.1, 0.5, 0.75, 0.75]


def test_a_function_gives_multipliers_and_is_saved_as_its_values():
    model = two_layer_model()
    optimizer = discriminative("sgd", lambda v: 0.5 if v.name == "kernel" else 1.0)
    with pytest.warns(UserWarning, match="multipliers are not saved"):
        assert optimizer.get_config()["multipliers"] == {}
    optimizer.build(model.trainable_variables)
    assert optimizer.get_config()["multipliers"] == {
        "^body/kernel$": 0.5, "^body/bias$": 1.0, "^head/kernel$": 0.5, "^head/bias$": 1.0}


@pytest.mark.parametrize("multipliers, message", [
    ({"body/": -1}, r"multiplier for 'body/' must be a finite number >= 0"),
    ({"body/": float("nan")}, r"must be a finite number >= 0"),
    ({"body/": True}, r"must be a finite number >= 0"),
    ({"(": 0.5}, r"Invalid multiplier pattern '\('"),
    ([0.5], r"multipliers must be a dict"),
])
def test_bad_multipliers_are_refused(multipliers, message):
    with pytest.raises(TransferkitError, match=message):
        discriminative("sgd", multipliers)


def test_a_built_optimizer_is_refused():
    optimizer = keras.optimizers.SGD()
    optimizer.build([keras.Variable(np.ones(2, "float32"))])
    with pytest.raises(TransferkitError, match="already built"):
        discriminative(optimizer, {"": 0.5})


def test_the_model_fits_saves_and_reloads_with_its_multipliers(tmp_path):
    model = two_layer_model()
    optimizer = get_optimizer("sgd:momentum=0.9", 0.01, multipliers={"body/": 0.5})
    model.compile(optimizer, loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")

    assert type(loaded.optimizer).__name__ == "DiscriminativeSGD"
    assert describe(loaded.optimizer) == describe(optimizer)
    assert int(to_numpy(loaded.optimizer.iterations)) == 4
    assert [loaded.optimizer.learning_rate_multiplier(v)
            for v in loaded.trainable_variables] == [0.5, 0.5, 1.0, 1.0]
    for saved, restored in zip(optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(restored))
    np.testing.assert_allclose(to_numpy(loaded.predict(x, verbose=0)),
                               to_numpy(model.predict(x, verbose=0)), rtol=1e-6)


# --- Per-block multipliers ------------------------------------------------------

def classifier(trunk_layers, dropout=0.2, name="tiny_classifier"):
    """Input -> "backbone" (a nested model of `trunk_layers`) -> pooling -> dropout -> head."""
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for layer in trunk_layers:
        x = layer(x)
    trunk = keras.Model(inputs, x, name="backbone")
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(trunk(inputs))
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name=name)


def conv(name):
    return keras.layers.Conv2D(2, 1, name=name)


def multipliers_by_layer(model, multipliers):
    optimizer = discriminative("sgd", multipliers)
    optimizer.build(model.weights)
    return {v.path: optimizer.learning_rate_multiplier(v) for v in model.weights}


def test_block_multipliers_halve_the_rate_block_by_block_from_the_head_down():
    model = classifier([conv("stem_conv"), conv("block1_conv"),
                        keras.layers.BatchNormalization(name="block1_bn"),
                        conv("block2_conv"), conv("block10_conv"), conv("block3_conv"),
                        conv("top_conv")])

    multipliers = block_multipliers(model, ratio=0.5, blocks=("block1", "block2", "block3"))

    expected = {"stem_conv": 0.125, "block1_conv": 0.125, "block1_bn": 0.125,
                # block10 is not block1: it sits between block2 and block3.
                "block2_conv": 0.25, "block10_conv": 0.5, "block3_conv": 0.5,
                "top_conv": 0.5, "head": 1.0}
    resolved = multipliers_by_layer(model, multipliers)
    assert resolved == {v.path: expected[v.path.split("/")[0]] for v in model.weights}
    assert json.loads(json.dumps(multipliers)) == multipliers
    assert list(multipliers.values())[-1] == 1.0  # the head, last


def test_block_multipliers_fall_back_to_exact_paths_when_names_overlap():
    # "conv/" is found inside "block2_conv/": one pattern per layer would give
    # block2 the stem's rate, so the table names every weight.
    model = classifier([conv("conv"), conv("block1_x"), conv("block2_conv")])
    multipliers = block_multipliers(model, ratio=0.1, blocks=("block1", "block2"))
    assert all(pattern.startswith("^") for pattern in multipliers)
    resolved = multipliers_by_layer(model, multipliers)
    assert {path.split("/")[0]: m for path, m in resolved.items()} == pytest.approx(
        {"conv": 0.01, "block1_x": 0.01, "block2_conv": 0.1, "head": 1.0})


def test_block_multipliers_train_with_the_rates_they_say():
    # No dropout: the twin below must see the same gradients.
    model = classifier([conv("block1_conv"), conv("block2_conv")], dropout=0.0)
    multipliers = block_multipliers(model, ratio=0.5, blocks=("block1", "block2"))
    model.compile(discriminative("sgd", multipliers), loss="mse")
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.ones((4, 2), "float32")
    before = [to_numpy(v) for v in model.trainable_variables]
    # The gradients, from the same step at the full rate on a copy.
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(keras.optimizers.SGD(0.01), loss="mse")

    model.train_on_batch(x, y)
    twin.train_on_batch(x, y)

    for v, w, old in zip(model.trainable_variables, twin.trainable_variables, before):
        expected = {"block1_conv": 0.25, "block2_conv": 0.5, "head": 1.0}[v.path.split("/")[0]]
        # Updates of ~1e-4 on float32 weights of ~0.5: good to ~1e-7.
        np.testing.assert_allclose(to_numpy(v) - old, expected * (to_numpy(w) - old),
                                   rtol=1e-4, atol=1e-7)
        assert np.abs(to_numpy(w) - old).max() > 1e-5


@pytest.mark.parametrize("ratio", [0, 1.5, -0.5, True, "half"])
def test_block_multipliers_refuse_a_bad_ratio(ratio):
    model = classifier([conv("block1_conv")])
    with pytest.raises(TransferkitError, match=r"ratio must be a number in \(0, 1\]"):
        block_multipliers(model, ratio=ratio, blocks=("block1",))


def test_block_multipliers_say_which_block_is_missing():
    model = classifier([conv("block1_conv")])
    with pytest.raises(TransferkitError, match="No layer of the backbone belongs to block 'conv2'"):
        block_multipliers(model, blocks="resnet50")
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(TransferkitError, match="has no layer named 'backbone'"):
        block_multipliers(plain, blocks=("block1",))


def test_discriminative_keeps_an_unregistered_schedule_as_it_is():
    class Halving(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 * 0.5 ** ops.cast(step, "float32")

        def get_config(self):
            return {}

    schedule = Halving()
    optimizer = discriminative(keras.optimizers.SGD(schedule), {"body/": 0.5})
    body = variable("body/kernel", np.ones((2, 3)))
    apply_steps(optimizer, [body], [GRADIENTS[0]], steps=2)
    np.testing.assert_allclose(to_numpy(body) - 1, -(0.1 + 0.05) * 0.5 * GRADIENTS[0],
                               rtol=1e-6, atol=3e-7)
