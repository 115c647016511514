"""The command line: audits printed, outputs atomic, one-line errors, exit 2."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import loss_total, numpy_penalty, snapshot

import transferkit
from transferkit.cli import main


@pytest.fixture
def model_file(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    path = tmp_path / "in.keras"
    model.save(path)
    return path


def run(*argv):
    return main([str(a) for a in argv])


def test_regularize_writes_a_model_whose_loss_has_the_penalties(model_file, tmp_path, capsys):
    out = tmp_path / "out.keras"
    assert run("regularize", model_file, "-o", out, "--kernel", "l2:1e-2", "--bias", "l1:1e-3") == 0
    printed = capsys.readouterr().out
    rows = [line.split()[:3] for line in printed.splitlines()[1:5]]
    assert rows == [["conv", "kernel", "3x3x3x4"], ["conv", "bias", "4"],
                    ["head", "kernel", "64x2"], ["head", "bias", "2"]]
    assert "Verified" in printed

    original = keras.saving.load_model(model_file)
    result = keras.saving.load_model(out)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(original), snapshot(result)))
    assert loss_total(result) == pytest.approx(numpy_penalty(result, l2=1e-2, l1=1e-3), rel=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["in.keras", "out.keras"]  # no temporary left


def test_layers_filter_and_audit_command(model_file, tmp_path, capsys):
    out = tmp_path / "out.keras"
    assert run("regularize", model_file, "-o", out, "--kernel", "l2:1e-2", "--layers", "^head$") == 0
    capsys.readouterr()
    assert run("audit", out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:2]] == [["head", "kernel"]]
    assert lines[-1].startswith("Verified")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--kernel", "l3:1e-4"], "Unknown penalty"),
        (["--kernel", "l2:-1"], ">= 0"),
        (["--kernel", "l2:lots"], "not a number"),
        (["--kernel", "l2:1e-4", "--layers", "nothing_like_this"], "matches no layer"),
        ([], "Nothing to apply"),
    ],
)
def test_bad_specs_and_filters_exit_2_with_one_line_and_no_output(model_file, tmp_path, capsys, args, words):
    out = tmp_path / "out.keras"
    assert run("regularize", model_file, "-o", out, *args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["in.keras"]


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "No such file"),
    (lambda p: p.write_text("not a model"), "not a Keras model file"),
    (lambda p: p.write_bytes(b"PK\x03\x04garbage"), "not a Keras model file"),
])
def test_missing_or_non_keras_input_exit_2(tmp_path, capsys, make, words):
    bad = tmp_path / "bad.keras"
    make(bad)
    out = tmp_path / "out.keras"
    assert run("regularize", bad, "-o", out, "--kernel", "l2:1e-4") == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_truncated_keras_archive_exit_2(model_file, tmp_path, capsys):
    data = model_file.read_bytes()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(data[: len(data) // 2])
    assert run("audit", broken) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transferkit: error:") and len(err.splitlines()) == 1


def test_output_must_differ_from_input_and_end_in_keras(model_file, capsys):
    assert run("regularize", model_file, "-o", model_file, "--kernel", "l2:1e-4") == 2
    assert run("regularize", model_file, "-o", "out.h5", "--kernel", "l2:1e-4") == 2
    assert "must end in .keras" in capsys.readouterr().err


def test_interrupted_save_leaves_nothing(model_file, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out.keras"
    monkeypatch.setattr(keras.Model, "save", fail)
    # Ctrl-C: one line and exit 130 (issue 14), the half-written file removed.
    assert run("regularize", model_file, "-o", out, "--kernel", "l2:1e-4") == 130
    assert sorted(os.listdir(tmp_path)) == ["in.keras"]


def test_console_script_version_help_and_exit_code(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "transferkit")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"transferkit {transferkit.__version__}"
    for command in ("demo", "regularize", "audit"):
        shown = subprocess.run([exe, command, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "usage: transferkit " + command in shown.stdout
    missing = subprocess.run([exe, "audit", str(tmp_path / "none.keras")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("transferkit: error: No such file")
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("args, words", [
    (["--sizes", "20,x"], "comma-separated integers"),
    (["--sizes", "5,50"], "train sizes"),
    (["--train-size", "1000"], "train sizes"),
    (["--seeds", "0"], "seeds"),
])
def test_bad_demo_flags_exit_2_with_one_line_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "demo"
    assert run("demo", "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_demo_shows_the_pitfall_and_the_fix():
    from transferkit.workflows.regularization_demo import regularization_demo

    lines = []
    results = regularization_demo(input_size=32, echo=lines.append)
    assert results["naive_penalties"] == 0
    assert results["rebuild_penalties"] > 0 and results["rebuild_max_weight_change"] > 0
    assert results["weights_kept"] and results["penalties"] > 50
    assert results["penalty_total"] == pytest.approx(results["audit_total"], rel=1e-5)
    assert results["reloaded_total"] == pytest.approx(results["audit_total"], rel=1e-6)
    assert results["frozen_penalties"] == 0
    assert any("no penalty reaches the loss" in line for line in lines)


@pytest.mark.parametrize("command", [
    ["train", "{missing}", "--backbone", "efficientnet_lite0", "--out", "{out}"],
    ["train", "{data}", "--val", "{missing}", "--backbone", "efficientnet_lite0", "--out",
     "{out}"],
    ["cv", "{missing}", "--backbone", "efficientnet_lite0"],
    ["compare", "{missing}", "--backbone", "efficientnet_lite0", "--variants", "l2"],
    ["lr-find", "{missing}", "--backbone", "efficientnet_lite0"],
    ["predict", "{missing}", "{data}"],
    ["evaluate", "{data}", "{data}"],  # a folder that is not a run
    ["train", "{data}", "--backbone", "efficientnet_lite0", "--out", ""],
    # A backbone name too: the catalogue needs no Keras.
    ["train", "{data}", "--backbone", "resnett50", "--out", "{out}"],
    ["train", "{data}", "--backbone", "minilm_l6", "--out", "{out}"],
    ["cv", "{data}", "--backbone", "resnett50"],
    ["compare", "{data}", "--backbone", "resnett50", "--variants", "l2"],
    ["compare", "{data}", "--backbone", "efficientnet_lite0", "--variants", "l9"],
    ["lr-find", "{data}", "--backbone", "resnett50"],
])
def test_mistakes_are_found_before_keras_is_imported(tmp_path, command):
    # Importing Keras (TensorFlow) takes seconds: a wrong path or option is
    # known without it.
    (tmp_path / "data" / "a").mkdir(parents=True)
    names = {"missing": tmp_path / "missing", "out": tmp_path / "run", "data": tmp_path / "data"}
    argv = [part.format(**names) for part in command]
    code = ("import sys; from transferkit.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'keras' in sys.modules, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "transferkit: error:" in done.stderr


@pytest.mark.parametrize("option, message", [
    (["--unfreeze", "bogus"], "Unknown freeze plan 'bogus'; use none, all, last:N"),
    (["--unfreeze", "blocks:9"], "Freeze plan blocks:9: efficientnet_lite0 has 7 blocks"),
    (["--augment", "flip=sideways"], "Invalid flip 'sideways': use one of horizontal"),
    (["--augment", "spin=3"], "Unknown augmentation key(s) 'spin'"),
    (["--optimizer", "adamm"], "Unknown optimizer 'adamm' (did you mean 'adam'?)"),
    (["--optimizer", "sgd:momentun=0.9"],
     ("Optimizer 'sgd' has no parameter 'momentun' (did you mean 'momentum'?); valid: "
      "learning_rate, momentum, nesterov, weight_decay")),
    (["--optimizer", "sgd:nesterov=1"], "Optimizer 'sgd': nesterov=1 should be true or false"),
    (["--schedule", "cosin"], "Unknown schedule 'cosin' (did you mean 'cosine'?)"),
    (["--schedule", "power:s=-5"], "Schedule 'power': s=-5 should be a number of steps > 0"),
    (["--kernel", "l3:1e-4"], "Unknown penalty 'l3:1e-4': the kind must be one of l1, l2"),
    (["--bias", "l2:-1"], "Penalty 'l2:-1': strength -1 must be a finite number >= 0"),
    (["--kernel-constraint", "max_norm:0"],
     "Constraint 'max_norm:0': the maximum norm must be > 0"),
    (["--kernel-constraint", "max_norm:3,axis=x"],
     "Constraint 'max_norm:3,axis=x': invalid axis 'x'"),
    (["--lr", "20"], "A learning rate must be a number in (0, 10), got 20.0."),
])
def test_bad_options_are_found_before_keras_is_imported(tmp_path, option, message):
    # Each option's spec is read and checked without Keras (issue 15): the
    # one-line error comes in a fraction of a second, not after importing
    # TensorFlow.
    (tmp_path / "data" / "a").mkdir(parents=True)
    argv = ["train", str(tmp_path / "data"), "--backbone", "efficientnet_lite0", "--out",
            str(tmp_path / "run"), *option]
    code = ("import sys; from transferkit.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'keras' in sys.modules, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and f"transferkit: error: {message}" in done.stderr


def test_the_spec_modules_and_the_configuration_import_no_keras():
    # What reads and checks a spec, and the configuration that uses them.
    modules = ["transferkit.specs", "transferkit.models.plans", "transferkit.data.augment",
               "transferkit.regularizers.penalty_specs",
               "transferkit.regularizers.constraint_specs", "transferkit.optim.optimizer_specs",
               "transferkit.optim.schedules", "transferkit.training.phases",
               "transferkit.training.config"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "from transferkit.training.config import TrainingConfig\n"
            "TrainingConfig('efficientnet_lite0', unfreeze='blocks:2', optimizer='adamw:"
            "weight_decay=1e-4', schedule='1cycle', kernel='l1_l2:1e-5,1e-4', "
            "bias={'l2': 1e-4}, kernel_constraint='max_norm:3', augment='rotate=0.1').phases()\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.split() == ["[]"], done.stderr[-2000:]
