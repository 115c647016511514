"""Plain helpers shared by the test files: `from helpers import make_folder, run`.

Fixtures live in `conftest.py`, which also re-exports these names (some test
files import from it). Everything here builds small, offline inputs.
"""

import keras
import numpy as np
from PIL import Image

import transferkit
from transferkit import cli

# A small backbone with random weights at 32 px: fast, offline.
FAST = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
        "--epochs", "2,1", "--batch-size", "8", "--no-augment", "--no-report"]


def make_folder(root, n=10, seed=0, classes=("blue", "red"), corrupt=False):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 80, (40 + i, 48, 3), dtype=np.uint8)
            pixels[..., 2 - 2 * label] += 170  # blue or red dominant
            image = Image.fromarray(pixels)
            if i % 3 == 0:
                image = image.convert("P") if i % 2 else image.convert("L")
            image.save(folder / f"{name}{i}.{'png' if i % 2 else 'jpg'}")
    if corrupt:
        (root / classes[0] / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


_HOLD_OUTPUT = """
import sys, time
from transferkit.outputs import output_folder
with output_folder(sys.argv[1], "train") as tmp:
    open(tmp + "/half-written.json", "w").close()
    print("writing", flush=True)
    time.sleep(120)
"""


def hold_output(path):
    """Another process in the middle of writing the run folder `path` (lock held)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", _HOLD_OUTPUT, str(path)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing", "the writer never started"
    return process


def run(*argv):
    return cli.main([str(a) for a in argv])


def tiny_backbone():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2"),
    ], name="tiny")


def tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return transferkit.build(tiny_backbone(), 3, dropout=0.3, **kwargs)


def images(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    y = (x[..., 0].mean(axis=(1, 2)) // 86).astype("int64")
    return x, y


class CtrlC(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when epoch `at` (over all phases, 0-based) begins."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.seen == self.at:
            raise KeyboardInterrupt
        self.seen += 1
