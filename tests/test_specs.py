"""One spec grammar (`transferkit.specs`), and every family's `get(identifier)`."""

import json

import keras
import numpy as np
import pytest

from transferkit import specs
from transferkit.data import augment
from transferkit.errors import TransferkitError
from transferkit.models import freezing
from transferkit.optim import optimizers, schedules
from transferkit.regularizers import constraints, penalties

# Pure parsing and Keras objects only: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends


# --- The grammar ---------------------------------------------------------------

@pytest.mark.parametrize("text, name, args, kwargs", [
    ("sgd", "sgd", (), {}),
    ("SGD", "sgd", (), {}),
    ("sgd:", "sgd", (), {}),
    ("l1_l2:1e-5,1e-4", "l1_l2", (1e-5, 1e-4), {}),
    ("1cycle:max_lr=1e-2", "1cycle", (), {"max_lr": 0.01}),
    ("max_norm:3,axis=[0,1,2]", "max_norm", (3,), {"axis": [0, 1, 2]}),
    ("last:20", "last", (20,), {}),
    ("flip=horizontal,rotate=0.1", None, (), {"flip": "horizontal", "rotate": 0.1}),
    # A number is a value, never a name.
    ("0.5", None, (0.5,), {}),
    ("3", None, (3,), {}),
    ("1e-4,2", None, (1e-4, 2), {}),
])
def test_names_positional_values_and_settings(text, name, args, kwargs):
    spec = specs.parse(text)
    assert (spec.name, spec.args, spec.kwargs) == (name, args, kwargs)
    assert spec.text == text


def test_values_are_typed_as_python_reads_them():
    spec = specs.parse("x:7,-2.5,1e-3,TRUE,false,None,null,inf,word,"
                       "a=[1,2.5,off],b=1;2,c=0.5/0.25,d=[],e=Val_Loss")
    a, b, c, d, e, f, g, h, i = spec.args
    assert (a, b, c, d, e, f, g, i) == (7, -2.5, 1e-3, True, False, None, None, "word")
    assert h == float("inf")
    assert [type(v) for v in (a, b, c, d)] == [int, float, float, bool]
    assert spec.kwargs == {"a": [1, 2.5, "off"], "b": [1, 2], "c": [0.5, 0.25], "d": [],
                           "e": "Val_Loss"}
    assert type(spec.kwargs["a"][0]) is int


def test_whitespace_is_ignored_and_names_and_keys_are_lower_cased_but_not_values():
    spec = specs.parse("  Min_Max_Norm : 0.5 , 2 , Rate = 0.5 , AXIS = [ 0 , 1 ] ,"
                       " monitor = Val_Acc ")
    assert spec.name == "min_max_norm"
    assert spec.args == (0.5, 2)
    assert spec.kwargs == {"rate": 0.5, "axis": [0, 1], "monitor": "Val_Acc"}
    assert spec.raw_args == ("0.5", "2")
    assert spec.raw_kwargs == {"rate": "0.5", "axis": "[ 0 , 1 ]", "monitor": "Val_Acc"}


def test_raw_values_keep_the_text_as_written():
    spec = specs.parse("from:007,rotate=1e-1")
    assert spec.args == (7,) and spec.raw_args == ("007",)
    assert spec.kwargs == {"rotate": 0.1} and spec.raw_kwargs == {"rotate": "1e-1"}


@pytest.mark.parametrize("text, problem", [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("a:1,,2", "an item is empty (a stray comma)"),
    ("a:1,", "an item is empty (a stray comma)"),
    ("a:x=1,2", "'2' comes after key=value settings (values go first)"),
    ("a:=1", "no key before '=1'"),
    ("a:b c=1", "'b c' is not a key (letters, digits and _)"),
    ("a:x=", "no value after 'x='"),
    ("a:x=1,X=2", "it sets 'x' twice"),
    ("a:[1,[2]]", "lists cannot be nested"),
    ("a:1]", "a ']' closes no '['"),
    ("a:[1", "a '[' is not closed"),
    ("a:1;;2", "a list has an empty item"),
    ("a:x=[1]2", "'[1]2' has a stray bracket"),
])
def test_malformed_specs_fail_in_one_line_naming_the_text_and_the_usage(text, problem):
    with pytest.raises(TransferkitError) as error:
        specs.parse(text, what="widget", usage="W:N, such as 'w:3'")
    message = str(error.value)
    assert message == f"Invalid widget {text!r}: {problem}; write W:N, such as 'w:3'."
    assert "\n" not in message


def test_families_can_forbid_positional_values_and_require_a_name():
    assert specs.parse("sgd:momentum=0.9", positional=False).kwargs == {"momentum": 0.9}
    with pytest.raises(TransferkitError, match=r"'momentum' is not a key=value setting"):
        specs.parse("sgd:momentum", positional=False)
    assert specs.parse("flip=none").name is None
    with pytest.raises(TransferkitError, match="it does not start with a name"):
        specs.parse("momentum=0.9", require_name=True)
    with pytest.raises(TransferkitError, match="Invalid spec 3: expected a string"):
        specs.parse(3)


def test_parse_value_and_its_errors():
    assert specs.parse_value(" [0, 1] ") == [0, 1]
    assert specs.parse_value("1e-3;1e-4") == [1e-3, 1e-4]
    assert specs.parse_value("NONE") is None
    with pytest.raises(TransferkitError, match=r"Invalid value '\[0,1': '\[0,1' has a stray"):
        specs.parse_value("[0,1")
    with pytest.raises(TransferkitError, match="Invalid value 0: expected a string"):
        specs.parse_value(0)


@pytest.mark.parametrize("name, args, kwargs", [
    ("power", (), {"s": 1000, "c": 1.0}),
    ("x", (0.1, 1e-05, 1 / 3, -2, True, None, "word"), {"a": [1, 2], "b": [], "c": False}),
    (None, (), {"flip": "horizontal", "rotate": 0.05}),
    ("unit_norm", (), {}),
])
def test_format_spec_is_read_back_as_it_was(name, args, kwargs):
    text = specs.format_spec(name, args, kwargs)
    spec = specs.parse(text)
    assert (spec.name, spec.args, spec.kwargs) == (name, args, kwargs)
    assert str(spec) == text


def test_format_value_writes_floats_in_their_shortest_exact_form():
    assert specs.format_value(1.0) == "1"
    assert specs.format_value(1e-05) == "1e-05"
    assert specs.format_value(1 / 3) == repr(1 / 3)
    assert specs.parse_value(specs.format_value(1 / 3)) == 1 / 3
    assert specs.format_value([100, 200]) == "100;200"


# --- Penalties -----------------------------------------------------------------

def test_penalties_get():
    assert penalties.get(None) is None
    regularizer = keras.regularizers.L1L2(l1=1e-5, l2=1e-4)
    assert penalties.get(regularizer) is regularizer

    built = penalties.get("l1_l2:1e-5,1e-4")
    assert type(built) is keras.regularizers.L1L2
    assert built.get_config() == pytest.approx({"l1": 1e-5, "l2": 1e-4})
    assert penalties.get("l1_l2:l2=1e-4,l1=1e-5").get_config() == built.get_config()

    for original in (keras.regularizers.L1(1e-5), keras.regularizers.L2(1e-4), built):
        for form in (original.get_config(), keras.regularizers.serialize(original)):
            again = penalties.get(json.loads(json.dumps(form)))
            assert type(again) is type(original), form
            assert again.get_config() == pytest.approx(original.get_config())
    assert type(penalties.get({"name": "L2", "l2": 1e-4})) is keras.regularizers.L2


@pytest.mark.parametrize("identifier, words", [
    ({"name": "l2", "l1": 1e-4}, "l2 has no strength 'l1'; it takes l2"),
    ({"name": "l3", "l2": 1e-4}, "kind must be one of l1, l2, l1_l2"),
    ({}, "kind must be one of"),
    ("l2:1e-4,l2=1e-3", "gives the l2 strength twice"),
    ("l2:1e-4,2e-4", "needs 1 strength(s)"),
    ("l2:true", "strength True is not a number"),
    ("l2:1e-4,", "an item is empty"),
    ([0.1], "expected a keras regularizer, a dict"),
])
def test_bad_penalties_fail_in_one_line(identifier, words):
    with pytest.raises(TransferkitError) as error:
        penalties.get(identifier)
    assert words in str(error.value) and "\n" not in str(error.value)


# --- Constraints ---------------------------------------------------------------

def test_constraints_get():
    assert constraints.get(None) is None
    constraint = keras.constraints.UnitNorm(axis=1)
    assert constraints.get(constraint) is constraint

    built = constraints.get("min_max_norm:0.5,2,rate=0.5,axis=[0,1]")
    assert type(built) is keras.constraints.MinMaxNorm
    assert built.get_config() == {"min_value": 0.5, "max_value": 2.0, "rate": 0.5,
                                  "axis": [0, 1]}
    assert constraints.get("max_norm:max_value=3").get_config() == {"max_value": 3.0, "axis": 0}

    originals = {
        "max_norm": keras.constraints.MaxNorm(3, axis=[0, 1, 2]),
        "unit_norm": keras.constraints.UnitNorm(axis=-1),
        "non_neg": keras.constraints.NonNeg(),
        "min_max_norm": built,
    }
    for name, original in originals.items():
        for form in ({"name": name, **original.get_config()},
                     keras.constraints.serialize(original)):
            again = constraints.get(json.loads(json.dumps(form)))
            assert type(again) is type(original), form
            assert again.get_config() == original.get_config()


def test_a_dict_without_axis_gets_the_per_unit_default_on_a_layer():
    conv = keras.layers.Conv2D(8, 3)
    constraint = constraints.constraint_for({"name": "max_norm", "max_value": 2}, conv)
    assert constraint.get_config() == {"max_value": 2.0, "axis": [0, 1, 2]}


@pytest.mark.parametrize("identifier, words", [
    ({"name": "max_norm", "max_value": 0}, "the maximum norm must be > 0"),
    ({"name": "max_norm"}, "needs 1 number(s)"),
    ({"name": "non_neg", "axis": 0}, "unknown option 'axis'; non_neg takes no options"),
    ({"max_value": 3}, "Unknown constraint"),
    ({"name": "max_norm", "max_value": 3, "axis": "x"}, "invalid axis 'x'"),
    ("max_norm:3,max_value=4", "gives max_value twice"),
    ("max_norm:axis=0,3", "'3' comes after key=value settings"),
    ("max_norm:3,axis=[0,1", "a '[' is not closed"),
])
def test_bad_constraints_fail_in_one_line(identifier, words):
    with pytest.raises(TransferkitError) as error:
        constraints.get(identifier)
    assert words in str(error.value) and "\n" not in str(error.value)


# --- Optimizers ----------------------------------------------------------------

def test_optimizers_get():
    assert optimizers.get(None) is None
    optimizer = keras.optimizers.Adam()
    assert optimizers.get(optimizer) is optimizer

    built = optimizers.get("SGD: momentum=0.9, nesterov=true")
    assert type(built) is keras.optimizers.SGD
    assert (built.momentum, built.nesterov) == (0.9, True)

    original = optimizers.get_optimizer("adamw:weight_decay=1e-3,beta_1=0.8", 3e-4)
    for form in (optimizers.describe(original), keras.optimizers.serialize(original)):
        again = optimizers.get(json.loads(json.dumps(form)))
        assert type(again) is keras.optimizers.AdamW
        assert again is not original
        assert optimizers.describe(again) == optimizers.describe(original)


def test_optimizer_specs_refuse_positional_values_and_missing_names():
    with pytest.raises(TransferkitError, match="'0.9' is not a key=value setting"):
        optimizers.get("sgd:0.9")
    with pytest.raises(TransferkitError, match="it does not start with a name"):
        optimizers.get("momentum=0.9")
    with pytest.raises(TransferkitError, match=r"Keras has no optimizer class 'Nope'"):
        optimizers.get({"class_name": "Nope", "config": {}})


# --- Schedules -----------------------------------------------------------------

def test_schedules_get():
    assert schedules.get(None) == schedules.Schedule("constant", {})
    schedule = schedules.get_schedule("cosine:warmup=0.1")
    assert schedules.get(schedule) is schedule

    built = schedules.get("Piecewise: boundaries=[10,20], values=1e-3/1e-4/1e-5")
    assert built == schedules.Schedule(
        "piecewise", {"boundaries": [10, 20], "values": [1e-3, 1e-4, 1e-5]})
    assert str(built) == "piecewise:boundaries=10;20,values=0.001;0.0001;1e-05"

    original = schedules.get("plateau:factor=0.2,patience=2")
    again = schedules.get(json.loads(json.dumps(original.describe())))
    assert again == original and again is not original
    assert schedules.get(str(original)) == original


def test_schedule_specs_refuse_positional_values():
    with pytest.raises(TransferkitError,
                       match=r"Invalid schedule 'power:100': '100' is not a key=value setting"):
        schedules.get("power:100")


# --- Augmentation --------------------------------------------------------------

def test_augmentation_get():
    assert augment.get(None) is None
    assert augment.get(False) is None and augment.get("none") is None
    assert augment.get("default") == augment.Augmentation.default()
    augmentation = augment.Augmentation(flip="vertical", zoom=0.2)
    assert augment.get(augmentation) is augmentation

    built = augment.get(" Flip = horizontal , rotate = 0.1 ")
    assert built == augment.Augmentation(flip="horizontal", rotate=0.1)
    again = augment.get(json.loads(json.dumps(built.describe())))
    assert again == built and again is not built
    # What get returns is what get_augmentation builds the layers of.
    assert [layer.name for layer in augment.get_augmentation(built).layers] == ["flip", "rotate"]


def test_augmentation_specs_take_settings_or_one_of_two_names():
    with pytest.raises(TransferkitError, match="write key=value pairs"):
        augment.get("default:rotate=0.1")
    with pytest.raises(TransferkitError, match="'0.1' is not a key=value setting"):
        augment.get("rotate=0.2,0.1")


# --- Freeze plans --------------------------------------------------------------

def test_freeze_plans_get():
    assert freezing.get(None) == freezing.FreezePlan("none")
    plan = freezing.FreezePlan("blocks", 2)
    assert freezing.get(plan) is plan

    assert freezing.get(" LAST : 20 ") == freezing.FreezePlan("last", 20)
    assert freezing.get("fraction:1") == freezing.FreezePlan("fraction", 1.0)
    # A layer name is taken as written, even when it reads as a number.
    assert freezing.get("from:007") == freezing.FreezePlan("from", "007")

    for original in ("none", "all", "last:3", "fraction:0.25", "from:conv5_block1_out",
                     "blocks:2"):
        plan = freezing.get(original)
        assert freezing.get(json.loads(json.dumps(plan.describe()))) == plan
        assert freezing.get(str(plan)) == plan
    assert freezing.get({"name": "last", "value": 3}) == freezing.FreezePlan("last", 3)


@pytest.mark.parametrize("identifier, words", [
    ("last:3.0", "3.0 is not a whole number"),
    ("last:1,2", "takes one value"),
    ("last:n=3", "takes no key=value settings"),
    ({"kind": "last"}, "needs a value"),
    ({"kind": "last", "value": 3, "extra": 1}, "a dict is {'kind': KIND, 'value': VALUE}"),
    ({"kind": "fraction", "value": 2.0}, "the fraction must be in (0, 1]"),
    ("from:[a", "a '[' is not closed"),
])
def test_bad_freeze_plans_fail_in_one_line(identifier, words):
    with pytest.raises(TransferkitError) as error:
        freezing.get(identifier)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_every_family_refuses_what_it_cannot_read():
    for get in (penalties.get, constraints.get, optimizers.get, schedules.get, augment.get,
                freezing.get):
        with pytest.raises(TransferkitError):
            get(np.float32)
