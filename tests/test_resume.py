"""Resuming an interrupted `train`: a checkpoint per epoch in `<out>.partial/`.

A resumed run must end where an uninterrupted one with the same seed ends:
the same history and the same weights. On TensorFlow's CPU kernels they are
bitwise equal (measured: 0.0 difference); the tests allow `TOLERANCE` for
kernels that are not deterministic.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest
from helpers import FAST, CtrlC, images, make_folder, run, tiny_model

from transferkit.errors import TransferkitError
from transferkit.training import resume
from transferkit.training.phases import Phase
from transferkit.training.recipe import FineTuner

TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}
# Two phases of two epochs; a rate that moves the weights.
ARGS = [a if a != "2,1" else "2,2" for a in FAST] + ["--lr", "0.01"]
CLI = [sys.executable, "-m", "transferkit.cli"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def reference(data):
    """An uninterrupted run; `--resume` without a checkpoint trains from the start."""
    out = data.parent / "reference"
    assert run("train", data, "--out", out, *ARGS, "--resume") == 0
    assert not os.path.exists(f"{out}.partial")  # removed once the run is written
    return out


def interrupt_after(monkeypatch, epochs):
    """Ctrl-C right after the checkpoint of epoch `epochs` (over all phases)."""
    save = resume.PartialRun.save

    def saving(self, model, best, optimizer, state):
        save(self, model, best, optimizer, state)
        if state["completed"] == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume.PartialRun, "save", saving)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def assert_same_run(out, reference):
    ours, theirs = (read_json(os.path.join(p, "history.json")) for p in (out, reference))
    assert ours["phases"] == theirs["phases"]
    assert ours["history"].keys() == theirs["history"].keys()
    for key, values in theirs["history"].items():
        np.testing.assert_allclose(ours["history"][key], values, **TOLERANCE, err_msg=key)
    models = [keras.saving.load_model(os.path.join(p, "model.keras")) for p in (out, reference)]
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, **TOLERANCE)


# Phase 1's case is also in the slow suite only (the default suite keeps the
# resume into the fine-tuning phase, which goes through phase 1's end).
@pytest.mark.parametrize("epochs, phase", [pytest.param(1, 0, marks=pytest.mark.slow), (3, 1)])
def test_an_interrupted_run_resumes_to_the_uninterrupted_one(
        data, reference, tmp_path, monkeypatch, capsys, epochs, phase):
    # Phase 1 is frozen and unaugmented: it trains the head on cached features.
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_after(patch, epochs)
        assert run("train", data, "--out", out, *ARGS) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"interrupted at epoch {epochs + 1}/4" in line
    assert line.endswith(f"--out {out} {' '.join(ARGS)} --resume")
    assert sorted(os.listdir(tmp_path)) == ["run.partial"]
    # The checkpoint, phase 1's features (no augmentation: cached) and the epochs' log.
    assert sorted(os.listdir(tmp_path / "run.partial")) == [f"epoch-{epochs:04d}", "features",
                                                             "training_log.csv"]
    saved = tmp_path / "run.partial" / f"epoch-{epochs:04d}"
    state = read_json(saved / "state.json")
    assert (state["phase"], state["completed"], state["total"]) == (phase, epochs, 4)
    assert state["identity"]["class_names"] == ["blue", "red"]
    assert {"model.weights.h5", "best.npz", "optimizer.npz"} <= set(os.listdir(saved))

    assert run("train", data, "--out", out, *ARGS, "--resume") == 0
    assert f"{epochs} epochs done" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert_same_run(out, reference)


def test_a_partial_folder_is_kept_and_only_resumed_with_the_same_options_and_data(
        tmp_path, monkeypatch, capsys):
    data = make_folder(tmp_path / "data")
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        assert run("train", data, "--out", out, *ARGS) == 130
    kept = sorted(os.listdir(out.parent / "run.partial"))
    capsys.readouterr()

    assert run("train", data, "--out", out, *ARGS) == 2  # no --resume: refused, not replaced
    line = capsys.readouterr().err.strip()
    assert "run.partial" in line and "--resume" in line and "\n" not in line

    assert run("train", data, "--out", out, *ARGS[:-1], "0.02", "--resume") == 2
    line = capsys.readouterr().err.strip()
    assert "different options or data" in line and "learning_rate" in line and "\n" not in line

    shutil.copy(data / "red" / "red1.png", data / "red" / "extra.png")
    assert run("train", data, "--out", out, *ARGS, "--resume") == 2
    line = capsys.readouterr().err.strip()
    assert "different options or data" in line and "train_files" in line

    assert sorted(os.listdir(out.parent / "run.partial")) == kept
    assert not out.exists()


def test_a_sigkilled_run_resumes(data, reference, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([*CLI, "train", data, "--out", out, *ARGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=tmp_path)
    partial = tmp_path / "run.partial"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (
            partial.is_dir() and any(p.startswith("epoch-") for p in os.listdir(partial))):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert any(p.startswith(".run.tmp-") for p in os.listdir(tmp_path))  # killed mid-run
    with pytest.warns(UserWarning, match="unfinished temporary folder"):
        assert run("train", data, "--out", out, *ARGS, "--resume") == 0
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert_same_run(out, reference)


# --------------------------------------------------------------------------
# FineTuner with a PartialRun: dropout, early stopping, plain and cached paths.


def _tune(folder, *, cut=None, cache=True):
    x, y = images(40)
    model = tiny_model(seed=0)
    partial = resume.PartialRun(folder, {"data": "tiny"}, seed=3)
    partial.load()
    tuner = FineTuner([Phase(3, 1e-2, "none"), Phase(4, 1e-2, "all")], batch_size=8,
                      patience=1, seed=3, cache=cache, verbose=0, partial=partial,
                      callbacks=[] if cut is None else [CtrlC(cut)])
    tuner.fit(model, x[:30], y[:30], validation_data=(x[30:], y[30:]))
    return tuner, model


@pytest.mark.parametrize("cache", [True, False])
def test_finetuner_resumes_with_dropout_and_early_stopping(tmp_path, cache):
    whole, reference = _tune(tmp_path / "whole", cache=cache)
    assert whole.phases_[1]["stopped_early"]  # so the cuts test its counters too
    # Inside phase 1, at the phase boundary, inside phase 2 (early stopping's counters).
    for cut in (1, 3, 4):
        folder = tmp_path / f"cut{cut}"
        with pytest.raises(KeyboardInterrupt):
            _tune(folder, cut=cut, cache=cache)
        tuner, model = _tune(folder, cache=cache)
        assert tuner.phases_ == whole.phases_, cut
        for key, values in whole.history_.items():
            np.testing.assert_allclose(tuner.history_[key], values, **TOLERANCE,
                                       err_msg=f"{key} after a cut at epoch {cut}")
        for a, b in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(a, b, **TOLERANCE)


def test_a_checkpoint_of_other_options_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, cut=2)
    partial = resume.PartialRun(tmp_path, {"data": "other"}, seed=3)
    with pytest.raises(TransferkitError, match=r"data: 'tiny' then, 'other' now"):
        partial.load()


def test_features_computed_before_an_interruption_are_reused(data, tmp_path, monkeypatch,
                                                             capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:  # Ctrl-C in the first epoch: no checkpoint yet
        patch.setattr(resume.PartialRun, "save", _raise(KeyboardInterrupt))
        assert run("train", data, "--out", out, *ARGS) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    features = tmp_path / "run.partial" / "features"
    assert f"features computed so far are kept in {features}" in line
    kept = sorted(p.name for p in features.glob("*.npy"))
    assert len(kept) == 2  # training and validation

    assert run("train", data, "--out", out, *ARGS) == 0  # no checkpoint: --resume not needed
    text = capsys.readouterr().out
    assert "Training features: read from" in text and "Validation features: read from" in text
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert sorted(p.name for p in (out / "features").glob("*.npy")) == kept


def _raise(error):
    def raising(*args, **kwargs):
        raise error

    return raising


# --------------------------------------------------------------------------
# Real signals, in both phases (slow).

# Augmented (the default): every epoch runs the backbone.
SIGNALLED = [{"2,1": "4,4", "32": "128"}.get(a, a) for a in FAST
             if a != "--no-augment"] + ["--lr", "0.01"]


def _signalled(data, out, signum, after, resuming=False):
    """Runs train, sends `signum` once the checkpoint of epoch `after` exists."""
    process = subprocess.Popen(
        [*CLI, "train", data, "--out", out, *SIGNALLED, *(["--resume"] if resuming else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = f"{out}.partial"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        found = [int(p[6:]) for p in (os.listdir(partial) if os.path.isdir(partial) else [])
                 if p.startswith("epoch-")]
        if found and max(found) >= after:
            break
        time.sleep(0.01)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    state = read_json(resume.PartialRun(partial, None).latest() + "/state.json")
    return process.returncode, err.decode(), state


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [(signal.SIGINT, signal.SIGKILL),
                                           (signal.SIGKILL, signal.SIGTERM)])
def test_signals_in_both_phases_resume_to_the_uninterrupted_run(tmp_path, first, second):
    # Epochs long enough to be interrupted in phase 1 (4 epochs) and in
    # phase 2 (4 epochs).
    data = make_folder(tmp_path / "data", n=24)
    reference = tmp_path / "reference"
    assert run("train", data, "--out", reference, *SIGNALLED) == 0
    out = tmp_path / "run"
    expected = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
    for signum, after, phase, resuming in ((first, 1, 0, False), (second, 5, 1, True)):
        code, err, state = _signalled(data, out, signum, after, resuming)
        assert code == expected[signum], err[-2000:]
        assert state["phase"] == phase, "the signal came too late; slow the epochs down"
        if signum != signal.SIGKILL:
            line = err.strip().splitlines()[-1]
            word = "interrupted" if signum == signal.SIGINT else "terminated"
            assert f"{word} at epoch {state['completed'] + 1}/8" in line, line
            assert line.endswith(f"--out {out} {' '.join(SIGNALLED)} --resume")
        assert not out.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a SIGKILLed run's leftovers, removed
        assert run("train", data, "--out", out, *SIGNALLED, "--resume") == 0
    assert not os.path.exists(f"{out}.partial")
    assert_same_run(out, reference)
