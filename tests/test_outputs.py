"""Output paths that cannot hurt: refused paths, --overwrite, locks, failed writes.

Every case starts from files that must survive and checks that they did.
"""

import builtins
import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from transferkit import cli
from transferkit.errors import TransferkitError
from transferkit.outputs import (
    OutputLock,
    check_output_file,
    check_output_folder,
    output_file,
    output_folder,
)

from helpers import FAST, hold_output, make_folder

TRAIN = [*FAST, "--epochs", "1,0"]
LR_FIND = [a for a in FAST if a != "--no-report"]


def run(*argv):
    return cli.main([str(a) for a in argv])


def tree(root):
    """Every file under `root` with its bytes: what must survive, exactly."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def previous_run(path, command="train"):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"command": command}))
    (path / "model.keras").write_bytes(b"the previous model")
    return path


def leftovers(folder):
    return [p for p in os.listdir(folder) if p.startswith(".")]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A current folder holding a sentinel file and the training images."""
    here = tmp_path / "scratch"
    data = make_folder(here / "data" / "train", n=4)
    (here / "notes.txt").write_text("must survive")
    monkeypatch.chdir(here)
    return here, data


# --------------------------------------------------------------------------
# Paths refused before any work.


@pytest.mark.parametrize("out", ["", "   ", ".", "./", "data/.."])
def test_train_refuses_an_empty_or_current_folder_out_and_keeps_everything(
        scratch, capsys, out):
    here, data = scratch
    before = tree(here)
    assert run("train", "data/train", "--out", out, *TRAIN) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "transferkit: error:" in err
    assert ("empty" in err) if not out.strip() else ("current folder" in err)
    assert tree(here) == before and not leftovers(here)


@pytest.mark.parametrize("command", ["train", "cv", "compare"])
def test_every_run_command_refuses_an_empty_out(scratch, capsys, command):
    here, _ = scratch
    before = tree(here)
    assert run(command, "data/train", "--out", "", *TRAIN) == 2
    assert "--out is empty" in capsys.readouterr().err
    assert tree(here) == before


def test_out_may_not_be_the_data_above_it_or_inside_it(scratch, capsys):
    here, data = scratch
    before = tree(here)
    for out, relation in [("data/train", "is the input"), ("data", "holds the input"),
                          ("data/train/blue/run", "lies inside the input")]:
        assert run("train", "data/train", "--out", out, "--overwrite", *TRAIN) == 2
        assert relation in capsys.readouterr().err
    assert tree(here) == before


def test_out_may_not_hold_the_validation_folder_or_the_cache(scratch, capsys):
    here, data = scratch
    val = make_folder(here / "runs" / "val", n=2)
    assert run("train", "data/train", "--val", val, "--out", "runs", *TRAIN) == 2
    assert "holds the input" in capsys.readouterr().err
    assert run("train", "data/train", "--cache-dir", "runs/x/cache", "--out", "runs/x",
               *TRAIN) == 2
    assert "holds the input runs/x/cache" in capsys.readouterr().err


def test_the_root_the_home_folder_and_folders_above_the_current_one_are_refused(
        tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "work")
    with pytest.raises(TransferkitError, match="home folder"):
        check_output_folder("~", "train")
    with pytest.raises(TransferkitError, match="root of the file system"):
        check_output_folder("/", "train", overwrite=True)
    with pytest.raises(TransferkitError, match="above the current folder"):
        check_output_folder(tmp_path, "train", overwrite=True)
    with pytest.raises(TransferkitError, match="does not exist"):
        check_output_folder(tmp_path / "no" / "run", "train")
    assert check_output_folder("run", "train") == str(home / "work" / "run")


def test_out_that_is_a_file_or_a_symlink_to_the_data_is_refused(scratch):
    here, data = scratch
    with pytest.raises(TransferkitError, match="not a folder"):
        check_output_folder("notes.txt", "train", overwrite=True)
    os.symlink(data, here / "link")
    with pytest.raises(TransferkitError, match="is the input"):
        check_output_folder("link", "train", inputs=[data], overwrite=True)


# --------------------------------------------------------------------------
# --overwrite.


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_names_what_is_there(
        scratch, capsys):
    here, data = scratch
    (here / "mine").mkdir()
    (here / "mine" / "thesis.tex").write_text("years of work")
    before = tree(here)
    assert run("train", "data/train", "--out", "mine", "--overwrite", *TRAIN) == 2
    err = capsys.readouterr().err
    assert "not a transferkit run" in err and "thesis.tex" in err
    assert tree(here) == before


def test_overwrite_refuses_a_run_of_another_command(scratch, capsys):
    here, data = scratch
    previous_run(here / "runs" / "cv5", command="cv")
    before = tree(here)
    assert run("train", "data/train", "--out", "runs/cv5", "--overwrite", *TRAIN) == 2
    assert "a transferkit cv run, not a train run" in capsys.readouterr().err
    assert tree(here) == before


def test_without_overwrite_a_previous_run_is_kept_and_the_flag_suggested(scratch, capsys):
    here, data = scratch
    previous_run(here / "runs" / "a")
    before = tree(here)
    assert run("train", "data/train", "--out", "runs/a", *TRAIN) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert tree(here) == before


def test_overwrite_replaces_a_previous_run_of_the_same_command(scratch):
    here, data = scratch
    previous_run(here / "runs" / "a")
    assert run("train", "data/train", "--out", "runs/a", "--overwrite", *TRAIN) == 0
    assert (here / "runs" / "a" / "model.keras").read_bytes() != b"the previous model"
    assert json.loads((here / "runs" / "a" / "config.json").read_text())["command"] == "train"
    assert not leftovers(here / "runs") and (here / "notes.txt").exists()


def test_an_empty_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    with output_folder(tmp_path / "empty", "train") as tmp:
        (open(os.path.join(tmp, "config.json"), "w")).close()
    assert os.listdir(tmp_path / "empty") == ["config.json"]


# --------------------------------------------------------------------------
# Complete or not at all; nothing that appears meanwhile is replaced.


def test_an_error_leaves_no_temporary_folder_and_the_previous_run(tmp_path):
    previous_run(tmp_path / "a")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with output_folder(tmp_path / "a", "train", overwrite=True) as tmp:
            (open(os.path.join(tmp, "model.keras"), "w")).close()
            raise RuntimeError("boom")
    assert tree(tmp_path) == before and not leftovers(tmp_path)


def test_the_final_rename_never_replaces_a_folder_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(TransferkitError, match="appeared while this run was writing") as caught:
        with output_folder(target, "train") as tmp:
            with open(os.path.join(tmp, "metrics.json"), "w") as f:
                f.write("{}")
            previous_run(target)  # by a hand that skipped the lock
    assert (target / "model.keras").read_bytes() == b"the previous model"
    kept = str(caught.value).split("written to ")[1].removesuffix(" instead.")
    assert os.listdir(kept) == ["metrics.json"]
    assert not leftovers(tmp_path)


def test_a_previous_run_swapped_for_another_folder_meanwhile_is_not_replaced(tmp_path):
    previous_run(tmp_path / "a")
    with pytest.raises(TransferkitError, match="appeared"):
        with output_folder(tmp_path / "a", "train", overwrite=True):
            os.rename(tmp_path / "a", tmp_path / "moved")
            (tmp_path / "a").mkdir()
            (tmp_path / "a" / "new.txt").write_text("someone else's")
    assert (tmp_path / "a" / "new.txt").read_text() == "someone else's"
    assert (tmp_path / "moved" / "model.keras").exists()


# --------------------------------------------------------------------------
# Locks.


def test_a_second_writer_on_the_same_output_fails_at_once(tmp_path):
    with output_folder(tmp_path / "run", "train"):
        with pytest.raises(TransferkitError, match=f"process {os.getpid()}.*transferkit train"):
            with output_folder(tmp_path / "run", "cv"):
                pass
    assert os.listdir(tmp_path) == ["run"]  # lock removed


def test_a_concurrent_train_process_on_the_same_out_exits_2_naming_the_holder(scratch):
    here, data = scratch
    holder = hold_output(here / "runs_a")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "transferkit.cli", "train", "data/train", "--out", "runs_a",
             *TRAIN], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert f"being written by another run (process {holder.pid}" in last
        assert holder.poll() is None  # the first run goes on
    finally:
        holder.kill()
        holder.wait()
    assert not (here / "runs_a").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    dead = hold_output(tmp_path / "run")
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    lock = tmp_path / ".run.lock"
    assert json.loads(lock.read_text())["pid"] == dead.pid
    with pytest.warns(UserWarning, match=f"stale lock.*process {dead.pid}"):
        with OutputLock(tmp_path / "run", "train"):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


# --------------------------------------------------------------------------
# Single files.


def test_regularize_refuses_to_replace_an_existing_file_without_overwrite(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="head")])
    source = tmp_path / "in.keras"
    model.save(source)
    existing = tmp_path / "existing.keras"
    existing.write_bytes(b"someone's model")
    assert run("regularize", source, "-o", existing, "--kernel", "l2:1e-4") == 2
    assert "exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"someone's model"
    assert run("regularize", source, "-o", existing, "--kernel", "l2:1e-4", "--overwrite") == 0
    assert existing.read_bytes() != b"someone's model"
    assert run("regularize", source, "-o", source, "--kernel", "l2:1e-4", "--overwrite") == 2
    assert "is the input" in capsys.readouterr().err


def test_output_file_never_replaces_a_file_that_appeared_while_writing(tmp_path):
    target = tmp_path / "plot.png"
    with pytest.raises(TransferkitError, match="appeared while writing"):
        with output_file(target) as tmp:
            with open(tmp, "w") as f:
                f.write("new")
            target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert os.listdir(tmp_path) == ["plot.png"]


def test_file_outputs_refuse_blank_paths_folders_and_the_input_data(tmp_path):
    data = make_folder(tmp_path / "data", n=1)
    (tmp_path / "other").mkdir()
    for path, message in [("", "empty"), (tmp_path / "other", "folder"),
                          (data / "blue" / "lr.png", "lies inside the input")]:
        with pytest.raises(TransferkitError, match=message):
            check_output_file(path, inputs=[data], flag="plot")


def test_lr_find_checks_its_plot_before_the_sweep(scratch, capsys):
    here, data = scratch
    (here / "lr_find.png").write_bytes(b"last week's plot")
    assert run("lr-find", "data/train", *LR_FIND) == 2  # default --plot lr_find.png exists
    assert "lr_find.png exists" in capsys.readouterr().err
    assert run("lr-find", "data/train", "--plot", "data/train/blue/lr.png", *LR_FIND) == 2
    assert "lies inside the input" in capsys.readouterr().err
    assert (here / "lr_find.png").read_bytes() == b"last week's plot"


# --------------------------------------------------------------------------
# Full, read-only and forbidden places.


def test_a_full_disk_is_one_line_exit_2_and_the_previous_run_survives(scratch, monkeypatch,
                                                                      capsys):
    here, data = scratch
    previous_run(here / "disk" / "run")
    before = tree(here)
    disk = str(here / "disk")
    real_open = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        # Every write on the "disk" folder fails as a full device does.
        if isinstance(file, (str, os.PathLike)) and str(file).startswith(disk) and (
                set(mode) & set("wax+")):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk_open)
    assert run("train", "data/train", "--out", "disk/run", "--overwrite", *TRAIN) == 2
    monkeypatch.setattr(builtins, "open", real_open)
    err = capsys.readouterr().err
    assert "Could not write disk/run: no space left on the device" in err
    assert err.count("\n") == 1
    assert tree(here) == before and not leftovers(here / "disk")


def _tmpfs(path, options):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the patched full-disk test "
                    "covers the same path")


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                    reason="mounting a small tmpfs needs root on Linux")
@pytest.mark.parametrize("options, message", [
    # Too small for the run's estimate: refused before any image is read.
    ("size=512k", "Not enough free space for small/run: the run needs about 36 MiB there and "
                  "0.5 MiB are free; free some space or choose another output."),
    ("size=1m,ro", "Could not write small/run: the file system is read-only. Nothing was "
                   "written and nothing there before was changed; free some space, fix the "
                   "permissions or choose another output."),
])
def test_a_real_full_or_read_only_disk_exits_2_without_a_crash(scratch, options, message):
    here, data = scratch
    _tmpfs(here / "small", options)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "transferkit.cli", "train", "data/train", "--out",
             "small/run", *TRAIN], capture_output=True, text=True, timeout=300)
        listing = os.listdir(here / "small")
    finally:
        subprocess.run(["umount", str(here / "small")])
    assert result.returncode == 2, result.stderr[-2000:]  # not 1, not 139
    assert result.stderr.strip().splitlines()[-1] == f"transferkit: error: {message}"
    assert "Traceback" not in result.stderr and listing == []


def test_a_read_only_parent_fails_before_any_image_is_read(scratch, capsys, monkeypatch):
    here, data = scratch
    real_mkdir = os.mkdir

    def read_only_mkdir(path, *args, **kwargs):
        if os.path.basename(str(path)).startswith(".run.tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    scanned = []
    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    monkeypatch.setattr("transferkit.workflows.train.scan_split",
                        lambda *a, **k: scanned.append(a) or pytest.fail("scanned"))
    assert run("train", "data/train", "--out", "run", *TRAIN) == 2
    assert "the file system is read-only" in capsys.readouterr().err
    assert not scanned and not leftovers(here)


def test_weights_are_not_written_to_a_disk_that_cannot_take_them(tmp_path, monkeypatch):
    # HDF5 crashes the interpreter after a write that fails half-way, so the
    # space is checked before h5py opens the file.
    import shutil

    import keras

    from transferkit.saving import save_weights

    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(1000)])
    needed = 100 * 1000 * 4 + 1000 * 4
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=needed))
    with pytest.raises(OSError) as caught:
        save_weights(model, tmp_path / "best.weights.h5")
    assert caught.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2 * needed + 2**20))
    save_weights(model, tmp_path / "best.weights.h5")
    assert os.listdir(tmp_path) == ["best.weights.h5"]
