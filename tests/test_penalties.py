import keras
import pytest

from transferkit import TransferkitError, get_penalty
from transferkit.regularizers.penalties import describe, penalty_value
from transferkit.regularizers.penalty_specs import KINDS

# Backend-agnostic core: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends


@pytest.mark.parametrize(
    "spec, cls, config",
    [
        ("l2:1e-4", keras.regularizers.L2, {"l2": 1e-4}),
        ("l1:1e-5", keras.regularizers.L1, {"l1": 1e-5}),
        ("L1_L2: 1e-5, 1e-4", keras.regularizers.L1L2, {"l1": 1e-5, "l2": 1e-4}),
        ("l2:0", keras.regularizers.L2, {"l2": 0.0}),
    ],
)
def test_spec_gives_the_keras_regularizer_with_its_strengths(spec, cls, config):
    regularizer = get_penalty(spec)
    assert type(regularizer) is cls
    assert regularizer.get_config() == pytest.approx(config)


def test_regularizer_objects_and_none_pass_through():
    regularizer = keras.regularizers.L2(0.5)
    assert get_penalty(regularizer) is regularizer
    assert get_penalty(None) is None


@pytest.mark.parametrize(
    "spec, words",
    [
        ("l3:1e-4", "kind must be one of"),
        ("l2", "needs 1 strength"),
        ("l1_l2:1e-4", "needs 2 strength"),
        ("l2:abc", "not a number"),
        ("l2:-1e-4", ">= 0"),
        ("l2:nan", ">= 0"),
        ("l2:inf", ">= 0"),
        (0.01, "expected a keras regularizer"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, words):
    with pytest.raises(TransferkitError, match=words):
        get_penalty(spec)


def test_penalty_value_matches_the_formula():
    import numpy as np

    w = np.array([[1.0, -2.0], [3.0, -4.0]])
    assert penalty_value(get_penalty("l1_l2:0.1,0.01"), w) == pytest.approx(0.1 * 10 + 0.01 * 30)
    assert describe(get_penalty("l1_l2:1e-5,1e-4")) == "l1_l2(1e-05, 0.0001)"
    assert describe(get_penalty("l2:1e-4")) == "l2(0.0001)"


def test_each_kind_names_the_arguments_of_its_keras_class():
    # Specs are checked without Keras (penalty_specs); the strengths they
    # name are the Keras class's arguments, in order.
    import inspect

    for kind, strengths in KINDS.items():
        cls = type(get_penalty(f"{kind}:" + ",".join(["0.1"] * len(strengths))))
        assert tuple(inspect.signature(cls.__init__).parameters)[1:] == strengths
