"""Watching a run: a quiet start (`--verbose` to see TensorFlow's lines) and `--log`."""

import csv
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import FAST, make_folder, run

from transferkit.errors import TransferkitError
from transferkit.training import resume
from transferkit.training.config import TrainingConfig, add_arguments, from_arguments

# A line of TensorFlow's native logging (absl/TSL), as it starts.
NATIVE_LINE = re.compile(r"^(?:[IWEF]0000 |WARNING: All log messages before absl)", re.M)
CLI = [sys.executable, "-m", "transferkit.cli"]
SOFTMAX = [*FAST, "--head", "softmax"]  # 2 head epochs, 1 fine-tuning epoch


def cli(*argv, **kwargs):
    return subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          **kwargs)


# --------------------------------------------------------------------------
# Quiet start


def test_a_command_that_imports_tensorflow_prints_none_of_its_start_up_lines():
    quiet, verbose = cli("backbones"), cli("--verbose", "backbones")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr
    assert "mobilenet_v3_small" in quiet.stdout
    assert not NATIVE_LINE.search(quiet.stderr), quiet.stderr
    assert quiet.stdout == verbose.stdout
    # Nothing but TensorFlow's own lines is hidden (they may appear with --verbose).
    shown = verbose.stderr.splitlines()
    assert all(line in shown for line in quiet.stderr.splitlines())


def test_an_error_after_tensorflow_is_imported_still_reaches_stderr(tmp_path):
    (tmp_path / "in.keras").write_text("not a zip")
    done = cli("regularize", tmp_path / "in.keras", "-o", tmp_path / "out.keras",
               "--kernel", "l2:1e-4")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"transferkit: error: {tmp_path / 'in.keras'} is not a Keras "
                                   "model file: expected a .keras archive written by "
                                   "model.save('model.keras').")


# A stand-in for TensorFlow: native lines on fd 2, a Python warning, a device lookup.
FAKE_TENSORFLOW = """
import os, sys
os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\\n")
print("a Python message", file=sys.stderr)
import logging
handler = logging.StreamHandler()  # holds the sys.stderr of the import, as absl's does
if os.environ.get("FAIL"):
    os.write(2, b"E0000 could not load libtensorflow_framework.so.2\\n")
    raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit\\n")
        return []
"""
IMPORT_IT = textwrap.dedent("""
    import sys
    from transferkit import quiet_tensorflow
    assert quiet_tensorflow()
    import tensorflow
    print(type(tensorflow.__loader__).__name__, type(tensorflow.__spec__.loader).__name__)
    assert not [f for f in sys.meta_path if type(f).__name__ == "_QuietFinder"]
    import os; os.write(2, b"after the import\\n")
    tensorflow.handler.emit(__import__("logging").makeLogRecord({"msg": "a late record"}))
""")


@pytest.fixture
def fake_tensorflow(tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_the_import_hides_native_lines_only_and_leaves_the_real_loader(fake_tensorflow):
    done = subprocess.run([sys.executable, "-c", IMPORT_IT], capture_output=True, text=True,
                          env=fake_tensorflow, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SourceFileLoader", "SourceFileLoader"]
    assert done.stderr == "a Python message\nafter the import\na late record\n"


def test_a_failing_import_shows_what_the_native_libraries_said(fake_tensorflow):
    done = subprocess.run([sys.executable, "-c", IMPORT_IT], capture_output=True, text=True,
                          env={**fake_tensorflow, "FAIL": "1"}, timeout=60)
    assert done.returncode == 1
    assert "E0000 could not load libtensorflow_framework.so.2" in done.stderr
    assert done.stderr.rstrip().endswith(
        "ImportError: libtensorflow_framework.so.2: cannot open shared object file")


# --------------------------------------------------------------------------
# --log: declared once


@pytest.mark.parametrize("given, kept", [
    ("csv", ("csv",)), ("tensorboard, CSV", ("csv", "tensorboard")), ("none", ()),
    (["mlflow", "csv"], ("csv", "mlflow")), ((), ()),
])
def test_log_takes_kinds_in_any_order_and_none(given, kept):
    assert TrainingConfig("mobilenet_v3_small", log=given).log == kept


@pytest.mark.parametrize("options, words", [
    ({"log": "csv,wandb"}, "unknown kind 'wandb'"),
    ({"log": 3}, "log must be 'none' or kinds among csv, tensorboard, mlflow"),
    ({"mlflow_uri": "file:./x"}, "is for log 'mlflow'"),
])
def test_bad_log_options_are_one_line(options, words):
    with pytest.raises(TransferkitError, match=re.escape(words)):
        TrainingConfig("mobilenet_v3_small", **options)


def test_the_log_flags_come_from_the_configuration():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--backbone", "mobilenet_v3_small", "--log", "csv,tensorboard"])
    config = TrainingConfig(**from_arguments(args))
    assert config.log == ("csv", "tensorboard") and config.mlflow_uri is None
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert "--log KIND,..." in parser.format_help()


# --------------------------------------------------------------------------
# --log: the runs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("observe") / "data", n=6)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def scalars(folder):
    """`{tag: [(step, value)]}` of the TensorBoard event files in `folder`."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


@pytest.fixture(scope="module")
def logged(data):
    """`(run folder, MLflow store)` of a train run with every log on."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    out, store = data.parent / "logged", data.parent / "mlruns"  # a local file store
    assert run("train", data, "--out", out, *SOFTMAX, "--lr", "0.01",
               "--log", "mlflow,tensorboard,csv", "--mlflow-uri", store) == 0
    return out, store


def test_train_logs_every_epoch_of_both_phases_to_csv_and_tensorboard(logged):
    out, _ = logged
    history = json.loads((out / "history.json").read_text())["history"]
    rows = read_csv(out / "training_log.csv")
    assert list(rows[0]) == ["epoch", "phase", "learning_rate", "accuracy", "loss",
                             "val_accuracy", "val_loss"]
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        ("1", "head"), ("2", "head"), ("3", "fine-tune")]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], [1e-2, 1e-2, 1e-3],
                               rtol=1e-6)
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([float(r[key]) for r in rows], history[key], rtol=1e-6)
    train = scalars(out / "logs" / "train")
    assert [(s, v) for s, v in train["epoch_phase"]] == [(0, 0), (1, 0), (2, 1)]
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [1e-2, 1e-2, 1e-3],
                               rtol=1e-6)
    validation = scalars(out / "logs" / "validation")
    assert [s for s, _ in validation["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in validation["epoch_loss"]], history["val_loss"],
                               rtol=1e-6)
    assert json.loads((out / "config.json").read_text())["training"]["log"] == [
        "csv", "tensorboard", "mlflow"]


def test_a_resumed_run_appends_to_its_csv_without_repeating_an_epoch(
        data, tmp_path, monkeypatch, capsys):
    # The worst moment: epoch 2's row is written, its checkpoint is not.
    out = tmp_path / "run"
    save = resume.PartialRun.save

    def saving(self, model, best, optimizer, state):
        if state["completed"] == 2:
            raise KeyboardInterrupt
        save(self, model, best, optimizer, state)

    with monkeypatch.context() as patch:
        patch.setattr(resume.PartialRun, "save", saving)
        assert run("train", data, "--out", out, *SOFTMAX) == 130
    partial = tmp_path / "run.partial"
    assert [r["epoch"] for r in read_csv(partial / "training_log.csv")] == ["1", "2"]
    capsys.readouterr()
    # Another --log is no other run: it resumes.
    assert run("train", data, "--out", out, *SOFTMAX, "--resume", "--log", "csv") == 0
    assert "1 epochs done" in capsys.readouterr().out
    rows = read_csv(out / "training_log.csv")
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        ("1", "head"), ("2", "head"), ("3", "fine-tune")]
    history = json.loads((out / "history.json").read_text())["history"]
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows], history["val_loss"],
                               rtol=1e-6)


def test_cv_logs_each_fold_and_none_logs_nothing(data, tmp_path):
    from transferkit.training.tracking import log_callbacks

    assert log_callbacks(TrainingConfig("mobilenet_v3_small", log="none").log, tmp_path) == []
    out = tmp_path / "cv"
    cv = [a if a != "2,1" else "2,0" for a in SOFTMAX]  # the head only: on cached features
    assert run("cv", data, "--folds", "2", "--out", out, *cv) == 0
    rows = read_csv(out / "training_log.csv")
    assert list(rows[0])[:3] == ["epoch", "fold", "phase"]
    assert [(r["fold"], r["epoch"], r["phase"]) for r in rows] == [
        ("1", "1", "head"), ("1", "2", "head"), ("2", "1", "head"), ("2", "2", "head")]
    history = json.loads((out / "history.json").read_text())["folds"]
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows],
                               [v for fold in history for v in fold["history"]["val_loss"]],
                               rtol=1e-6)


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_a_missing_log_package_is_one_line_naming_the_extra(data, tmp_path, monkeypatch,
                                                            capsys, kind):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == kind else find_spec(name, *a))
    assert run("train", data, "--out", tmp_path / "run", *SOFTMAX, "--log", f"csv,{kind}") == 2
    assert capsys.readouterr().err.strip() == (
        f"transferkit: error: --log {kind} needs the {kind} package: "
        f"pip install 'transferkit[{kind}]'.")
    assert not (tmp_path / "run").exists()


def test_mlflow_gets_the_parameters_each_epochs_metrics_and_the_run_files(logged):
    from mlflow.tracking import MlflowClient

    out, store = logged
    client = MlflowClient(tracking_uri=str(store))
    experiment = client.get_experiment_by_name("transferkit")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == f"train {out}"
    params = found.data.params
    assert (params["command"], params["backbone"], params["epochs"], params["head"]) == (
        "train", "mobilenet_v3_small", "[2, 1]", "softmax")
    assert json.loads(params["log"]) == ["csv", "tensorboard", "mlflow"]
    history = json.loads((out / "history.json").read_text())["history"]
    rows = read_csv(out / "training_log.csv")
    for key in ("loss", "val_loss", "learning_rate"):
        logged = client.get_metric_history(found.info.run_id, key)
        assert [m.step for m in logged] == [1, 2, 3], key
        np.testing.assert_allclose([m.value for m in logged], [float(r[key]) for r in rows],
                                   rtol=1e-6, err_msg=key)
    assert [m.value for m in client.get_metric_history(found.info.run_id, "phase")] == [0, 0, 1]
    np.testing.assert_allclose(found.data.metrics["best_val_loss"], min(history["val_loss"]),
                               rtol=1e-6)
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"model.keras", "metrics.json", "config.json", "history.json",
            "training_log.csv"} <= files
