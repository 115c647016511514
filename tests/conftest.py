import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
# Plain helpers live in helpers.py (`from helpers import make_folder`); re-exported here.
from helpers import FAST, images, make_folder, run, tiny_backbone, tiny_model  # noqa: E402,F401

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
