"""`TrainingConfig`: one declaration that the command line, config.json and variants agree on."""

import argparse
import dataclasses
import re

import pytest

from transferkit import cli
from transferkit.errors import TransferkitError
from transferkit.training.config import TrainingConfig, from_arguments, training_config

COMMANDS = ("train", "cv", "compare", "lr-find")
FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}


def subparser(command):
    parser = cli._parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


def config_actions(parser):
    """The parser's actions that set a `TrainingConfig` field, by flag."""
    found = {}
    for action in parser._actions:
        name = action.dest.split("__")[0]
        if name in FIELDS:
            for flag in action.option_strings:
                found[flag] = action
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_has_its_flag_and_every_flag_a_field(command):
    actions = config_actions(subparser(command))
    for name, field in FIELDS.items():
        flag = field.metadata["flag"]
        assert flag.name in actions, f"{command}: no {flag.name} for {name}"
        assert actions[flag.name].dest == name
        for alias in flag.aliases:
            assert alias.name in actions, f"{command}: no {alias.name}"
    declared = {f.metadata["flag"].name for f in FIELDS.values()} | {
        a.name for f in FIELDS.values() for a in f.metadata["flag"].aliases}
    assert set(actions) == declared
    # And nothing else on the command takes a field's name under another flag.
    others = [a for a in subparser(command)._actions if a.dest in FIELDS
              and not set(a.option_strings) & declared]
    assert not others


@pytest.mark.parametrize("command", ["train", "cv", "lr-find"])
def test_the_command_line_defaults_are_the_fields_defaults(command):
    args = subparser(command).parse_args(["data", "--backbone", "mobilenet_v3_small",
                                          *(["--out", "run"] if command == "train" else [])])
    given = from_arguments(args)
    made = TrainingConfig(**given)
    expected = TrainingConfig("mobilenet_v3_small")
    if command == "lr-find":  # lr_find's own default: the head phase's rate
        assert given.pop("unfreeze") == "none"
        made = TrainingConfig(**given)
    assert made == expected
    assert set(given) == {"backbone"}  # nothing but what was typed


def test_the_help_shows_each_fields_default():
    text = " ".join(subparser("train").format_help().split())
    for name, field in FIELDS.items():
        flag = field.metadata["flag"]
        if field.type is bool or name == "backbone":
            continue
        shown = flag.show if flag.show is not None else (
            ",".join(map(str, field.default)) if isinstance(field.default, tuple)
            else "none" if field.default is None
            else f"{field.default:g}" if isinstance(field.default, float) else str(field.default))
        assert f"(default {shown})" in text, name


def test_compare_counts_only_the_flags_given():
    args = subparser("compare").parse_args(["data", "--backbone", "mobilenet_v3_small",
                                            "--dropout", "0.5", "--no-augment"])
    assert from_arguments(args) == {"backbone": "mobilenet_v3_small", "dropout": 0.5,
                                    "augment": "none"}


def test_flags_turn_into_field_values():
    parser = subparser("train")

    def given(*argv):
        return from_arguments(parser.parse_args(["data", "--out", "run", "--backbone",
                                                 "mobilenet_v3_small",
                                                 *argv]))

    assert given("--lr", "1e-3,1e-5")["fine_tune_factor"] == pytest.approx(0.01)
    assert given("--epochs", "2,3")["epochs"] == (2, 3)
    assert given("--patience", "0")["patience"] is None
    assert given("--weights", "none")["weights"] is None
    assert given("--crop", "none")["crop"] is None
    assert given("--max-norm", "3")["kernel_constraint"] == "max_norm:3"
    assert given("--train-batchnorm")["batchnorm"] == "train"
    assert given("--no-augment", "--augment", "flip=horizontal")["augment"] == "flip=horizontal"
    assert given("--from-scratch")["from_scratch"] is True
    with pytest.raises(TransferkitError, match="Give --kernel-constraint or --max-norm"):
        given("--kernel-constraint", "unit_norm", "--max-norm", "3")
    with pytest.raises(TransferkitError, match="Give --lr or --fine-tune-factor"):
        given("--lr", "1e-3,1e-4", "--fine-tune-factor", "0.5")
    with pytest.raises(TransferkitError, match="--dropout takes RATE; got 'half'"):
        given("--dropout", "half")


def test_config_json_form_rebuilds_the_same_config():
    config = TrainingConfig("mobilenet_v3_small", epochs=(2, 3), kernel="l2:1e-4",
                            dropout_after="blocks", augment="flip=horizontal", crop="center")
    again = TrainingConfig.from_dict(config.to_dict())
    assert again == config and again.epochs == (2, 3)
    with pytest.raises(TransferkitError, match="did you mean 'kernel'"):
        TrainingConfig.from_dict({**config.to_dict(), "kernal": "l2:1e-4"})


def test_a_variant_is_replace_and_is_checked_again():
    base = TrainingConfig("mobilenet_v3_small")
    variant = dataclasses.replace(base, kernel="l2:1e-4", dropout=0.5)
    assert (variant.kernel, variant.dropout, variant.epochs) == ("l2:1e-4", 0.5, base.epochs)
    with pytest.raises(TransferkitError, match=re.escape("dropout must be in [0, 1), got 2")):
        dataclasses.replace(base, dropout=2)
    assert training_config(base, {"seed": 3}, "here").seed == 3


@pytest.mark.parametrize("changes, words", [
    ({"head": "svm"}, "head must be one of"),
    ({"epochs": (5,)}, "epochs must be two counts"),
    ({"fine_tune_factor": 2.0}, "should not exceed"),
    ({"learning_rate": -1.0}, "A learning rate must be"),
    ({"unfreeze": "half"}, "Unknown freeze plan"),
    ({"kernel": "l3:1"}, "l3"),
    ({"augment": "spin=3"}, "spin"),
    ({"image_size": 8}, "at least 32"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"patience": 0}, "patience must be an int >= 1 or None"),
    ({"head": "logreg", "from_scratch": True}, "from_scratch"),
    ({"optimizer": "adamax"}, "Unknown optimizer"),
])
def test_every_mistake_is_one_line_when_the_config_is_made(changes, words):
    with pytest.raises(TransferkitError, match=re.escape(words)) as error:
        TrainingConfig("mobilenet_v3_small", **changes)
    assert "\n" not in str(error.value)


def test_unknown_options_name_the_caller_and_the_closest_option():
    with pytest.raises(TransferkitError, match="'dropuot' \\(did you mean 'dropout'\\?\\) in "
                       "train"):
        training_config("mobilenet_v3_small", {"dropuot": 0.5}, "train")


def test_a_regularizer_object_is_recorded_by_its_class_and_config():
    import json

    import keras

    records = [TrainingConfig(backbone="efficientnet_lite0",
                              kernel=keras.regularizers.L2(0.01)).to_dict()["kernel"]
               for _ in range(2)]
    assert records[0] == records[1]  # no object address: a resume compares these
    assert records[0]["class_name"] == "L2"
    assert records[0]["config"]["l2"] == pytest.approx(0.01)
    json.dumps(records[0])


# --------------------------------------------------------------------------
# head="auto": decided by the number of training images.


def test_auto_head_is_a_linear_classifier_for_small_data_with_default_options():
    config = TrainingConfig(backbone="efficientnet_lite0")
    assert config.head == "auto" and not config.linear
    assert config.for_data(245).head == "logreg"
    assert config.for_data(999).head == "logreg"
    assert config.for_data(1000).head == "softmax"
    assert config.for_data(None).head == "softmax"  # compare, lr_find: a network


@pytest.mark.parametrize("option", [
    {"epochs": (8, 4)}, {"learning_rate": 3e-3}, {"unfreeze": "blocks:2"},
    {"augment": False}, {"dropout": 0.5}, {"kernel": "l2:1e-4"}, {"from_scratch": True},
    {"weights": None},
])
def test_auto_head_fine_tunes_when_a_network_option_is_given(option):
    config = TrainingConfig(backbone="efficientnet_lite0", **option)
    assert config.for_data(245).head == "softmax"


def test_an_explicit_head_is_kept_whatever_the_data():
    for head in ("softmax", "logreg", "linear-svm"):
        config = TrainingConfig(backbone="efficientnet_lite0", head=head)
        assert config.for_data(10).head == config.for_data(10**6).head == head


def test_auto_head_in_a_real_train_run(tmp_path, capsys):
    import json

    import transferkit
    from helpers import make_folder, run

    data = make_folder(tmp_path / "data", n=6)
    weights = tmp_path / "backbone.weights.h5"
    transferkit.load_backbone("mobilenet_v3_small", weights=None,
                              input_shape=(32, 32, 3)).save_weights(weights)
    common = ["--backbone", "mobilenet_v3_small", "--weights", weights, "--image-size", "32",
              "--no-report"]
    assert run("train", data, "--out", tmp_path / "small", *common) == 0
    assert "Head auto -> logreg" in capsys.readouterr().out
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    assert config["head"] == config["training"]["head"] == "logreg"
    assert run("train", data, "--out", tmp_path / "tuned", *common, "--epochs", "1,0") == 0
    assert "Head auto -> softmax" in capsys.readouterr().out
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["head"] == "softmax"
