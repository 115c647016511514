"""Faults and hostile input: one line, the right exit code, nothing lost or half-written."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from helpers import FAST, hold_output, make_folder, run
from transferkit.errors import TransferkitError
from transferkit.outputs import output_folder

CLI = [sys.executable, "-m", "transferkit.cli"]


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def data(tmp_path):
    return make_folder(tmp_path / "data", n=4)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = make_folder(root / "data", n=4)
    assert run("train", data, "--out", root / "run", *FAST, "--epochs", "1,0") == 0
    return data, root / "run"


# --------------------------------------------------------------------------
# Checked before any image is read.


def no_scan(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the images were scanned before the mistake was found")

    monkeypatch.setattr("transferkit.workflows.train.scan_split", refuse)


@pytest.mark.parametrize("args, words", [
    (["--unfreeze", "blocks:99"], "mobilenet_v3_small has 11 blocks"),
    (["--image-size", "100000"], "GiB of memory"),
    (["--batch-size", "100000", "--image-size", "4000"], "lower --image-size or --batch-size"),
    (["--unfreeze", "from:expanded_conv_99"], "has no layer 'expanded_conv_99'"),
    (["--unfreeze", "last:999"], "the backbone has only"),
])
def test_mistakes_known_from_the_catalogue_stop_before_the_scan(data, tmp_path, capsys,
                                                                 monkeypatch, args, words):
    no_scan(monkeypatch)
    assert run("train", data, "--out", tmp_path / "run", *FAST, *args) == 2
    assert words in one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_too_little_free_space_stops_before_the_scan(data, tmp_path, capsys, monkeypatch):
    no_scan(monkeypatch)
    real = __import__("shutil").disk_usage

    def nearly_full(path):
        return real(path)._replace(free=5 << 20)

    monkeypatch.setattr("transferkit.outputs.shutil.disk_usage", nearly_full)
    assert run("train", data, "--out", tmp_path / "run", *FAST) == 2
    line = one_line(capsys.readouterr().err)
    assert "Not enough free space" in line and "5.0 MiB are free" in line
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_a_weights_file_that_is_not_one_stops_before_the_scan(data, tmp_path, capsys,
                                                               monkeypatch):
    no_scan(monkeypatch)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(os.urandom(4096))
    assert run("train", data, "--out", tmp_path / "run", *FAST, "--weights", garbage) == 2
    assert "is not a weights file" in one_line(capsys.readouterr().err)
    assert run("train", data, "--out", tmp_path / "run", *FAST, "--weights",
               tmp_path / "missing.h5") == 2
    assert "No such weights file" in one_line(capsys.readouterr().err)


def test_hdf5_weights_of_another_model_are_one_line(tmp_path):
    import transferkit

    other = tmp_path / "dense.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(other)
    assert h5py.is_hdf5(other)
    with pytest.raises(TransferkitError, match="Could not load the weights file") as error:
        transferkit.build("mobilenet_v3_small", 2, weights=str(other), input_shape=(32, 32, 3))
    assert "\n" not in str(error.value)


def test_a_class_folder_that_links_to_itself_is_one_line(data, tmp_path, capsys):
    os.symlink("loop", data / "loop")
    assert run("train", data, "--out", tmp_path / "run", *FAST) == 2
    line = one_line(capsys.readouterr().err)
    assert "Could not read" in line and "loop" in line and "symbolic links" in line


# --------------------------------------------------------------------------
# Interruptions.


def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing(data, tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("transferkit.workflows.train.scan_split", interrupt)
    assert run("train", data, "--out", tmp_path / "run", *FAST) == 130
    assert "interrupted" in one_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_sigterm_stops_a_real_run_with_exit_143_and_leaves_nothing(data, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([*CLI, "train", data, "--out", out, *FAST, "--epochs", "50,50"],
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lock = tmp_path / ".run.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.exists(), "the run never started"
    time.sleep(2)  # well inside the run
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and ("terminated" in last or "interrupted at epoch" in last)
    # No run folder, no temporary folder, no lock; the finished epochs are kept to resume.
    assert sorted(os.listdir(tmp_path)) in (["data"], ["data", "run.partial"])


def test_a_killed_runs_temporary_folder_is_removed_by_the_next_run(tmp_path):
    killed = hold_output(tmp_path / "run")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".run.tmp-")]
    (tmp_path / ".other.tmp-1-0123abcd").mkdir()  # another output's: not ours to remove
    with pytest.warns(UserWarning, match="Removed 1 unfinished temporary folder"):
        with output_folder(tmp_path / "run", "train") as tmp:
            open(os.path.join(tmp, "config.json"), "w").close()
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-1-0123abcd", "run"]


# --------------------------------------------------------------------------
# Reading a run.


def test_a_closed_pipe_is_one_line_exit_2(trained_run):
    data, out = trained_run
    process = subprocess.Popen([*CLI, "predict", out, data, "--csv"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 2, err[-2000:]
    assert "broken pipe" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_class_names_that_do_not_match_the_model_are_one_line(trained_run, tmp_path, capsys):
    import shutil

    data, out = trained_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    config = json.loads((copy / "config.json").read_text())
    config["class_names"] = ["blue", "red", "green"]
    (copy / "config.json").write_text(json.dumps(config))
    assert run("predict", copy, data / "blue") == 2
    assert "names 3 classes but" in one_line(capsys.readouterr().err)


def test_a_replaced_model_file_is_flagged(trained_run, tmp_path, capsys):
    import shutil

    data, out = trained_run
    config = json.loads((out / "config.json").read_text())
    from transferkit.saving import file_sha256

    assert config["model_sha256"] == file_sha256(out / "model.keras")
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    model = keras.saving.load_model(copy / "model.keras", compile=False)
    model.get_layer("head").kernel.assign(np.zeros(model.get_layer("head").kernel.shape))
    model.save(copy / "model.keras")
    with pytest.warns(UserWarning, match="not the file this run wrote"):
        assert run("predict", copy, data / "blue") == 0
