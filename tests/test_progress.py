"""Progress: a bar on a terminal, a line per stage elsewhere, nothing when quiet or short."""

import io

import numpy as np
import pytest
from helpers import FAST, make_folder, run

from transferkit.progress import Progress, is_quiet, quiet


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_long_pass_is_one_summary_line():
    stream = io.StringIO()
    with Progress(10, "Predicting", unit="images", stream=stream, delay=0) as progress:
        for _ in range(10):
            progress.update()
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("Predicting: 10 images in ") and line.endswith("/s)")


def test_a_short_pass_prints_nothing():
    for stream in (io.StringIO(), Terminal()):
        with Progress(10, "Predicting", stream=stream) as progress:  # delay 2 s
            progress.update(10)
        assert stream.getvalue() == ""


def test_on_a_terminal_the_bar_shows_count_rate_and_time_left_then_a_summary():
    stream = Terminal()
    with Progress(4, "Checking", unit="files", stream=stream, delay=0) as progress:
        progress.update(1)
        drawn = stream.getvalue()
        progress.update(3)
    assert drawn.startswith("\rChecking [") and "1/4 files" in drawn and "left" in drawn
    assert stream.getvalue().endswith("\n") and "Checking: 4 files in" in stream.getvalue()


def test_an_error_ends_the_bar_with_a_newline_and_no_summary():
    stream = Terminal()
    with pytest.raises(RuntimeError), Progress(4, "Checking", stream=stream, delay=0) as p:
        p.update(1)
        raise RuntimeError("boom")
    assert stream.getvalue().endswith("\n") and "Checking:" not in stream.getvalue()


def test_quiet_blocks_print_nothing_and_nest():
    stream = Terminal()
    with quiet():
        assert is_quiet()
        with quiet(False):
            assert not is_quiet()
        with Progress(3, "Predicting", stream=stream, delay=0) as progress:
            progress.update(3)
    assert not is_quiet() and stream.getvalue() == ""


def test_the_cli_quiet_flag_silences_the_epochs_and_goes_either_side_of_the_command(
        tmp_path, capfd):
    from transferkit.cli import _parser

    assert _parser().parse_args(["--quiet", "backbones"]).quiet
    assert _parser().parse_args(["backbones", "--quiet"]).quiet
    assert not _parser().parse_args(["backbones"]).quiet
    data = make_folder(tmp_path / "data", n=6)
    one_phase = [*FAST, "--epochs", "3,0"]
    assert run("train", data, "--out", tmp_path / "loud", *one_phase) == 0
    loud = capfd.readouterr()
    assert loud.out.count("val_loss:") == 3  # a line an epoch (stdout is not a terminal)
    assert run("train", data, "--out", tmp_path / "quiet", *one_phase, "--quiet") == 0
    quiet_run = capfd.readouterr()
    assert "val_loss:" not in quiet_run.out and "Extracting features" not in quiet_run.err
    assert "Best epoch" in quiet_run.out  # the result still prints
    logged = [np.loadtxt(tmp_path / name / "training_log.csv", delimiter=",", skiprows=1,
                         usecols=-1) for name in ("loud", "quiet")]
    np.testing.assert_array_equal(*logged)  # the same run, only quieter
