"""`regularize` on the `keras.applications` families, as pretrained backbones.

Each backbone is built with `weights=None`, its weights saved to a file, and a
second backbone loaded from that file through `keras.applications`' own
`weights=` argument: the same path ImageNet weights take, offline.
"""

import keras
import numpy as np
import pytest
from conftest import loss_total, numpy_penalty, snapshot

import transferkit

FAMILIES = {
    "VGG16": (keras.applications.VGG16, 32),
    "ResNet50": (keras.applications.ResNet50, 32),
    "InceptionV3": (keras.applications.InceptionV3, 75),
    "Xception": (keras.applications.Xception, 71),
    "MobileNetV2": (keras.applications.MobileNetV2, 32),
    "MobileNetV3Small": (keras.applications.MobileNetV3Small, 32),
    "DenseNet121": (keras.applications.DenseNet121, 32),
    "EfficientNetB0": (keras.applications.EfficientNetB0, 32),
}
KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def pretrained_classifier(family, tmp_path):
    """A new 3-class head on a backbone whose weights come from a file."""
    build, size = FAMILIES[family]
    kwargs = dict(include_top=False, input_shape=(size, size, 3), pooling="avg")
    weights_file = tmp_path / f"{family}.weights.h5"
    build(weights=None, **kwargs).save_weights(weights_file)
    backbone = build(weights=str(weights_file), **kwargs)
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(backbone(inputs))
    return keras.Model(inputs, outputs), backbone


@pytest.mark.parametrize("family", list(FAMILIES))
def test_regularize_keeps_pretrained_weights_and_penalizes_every_kernel(family, tmp_path):
    model, backbone = pretrained_classifier(family, tmp_path)
    before = snapshot(model)

    report = transferkit.regularize(model, kernel="l2:1e-4", bias="l1:1e-5")

    after = snapshot(model)
    assert len(before) == len(after)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    expected = numpy_penalty(model, l2_names=KERNELS, l2=1e-4, l1=1e-5)
    assert loss_total(model) == pytest.approx(expected, rel=1e-5)
    kernel_like = [v for v in model.weights if v.name in KERNELS + ("bias",)]
    assert len(report.entries) == len(kernel_like) > 10
    assert all(e.active for e in report.entries)
    report.verify(model)


@pytest.mark.parametrize("family", ["MobileNetV3Small", "EfficientNetB0"])
def test_regularized_application_saves_frozen_and_reloads_with_penalties(family, tmp_path):
    model, backbone = pretrained_classifier(family, tmp_path)
    backbone.trainable = False
    report = transferkit.regularize(model, kernel="l2:1e-4")
    assert {e.layer for e in report.entries if e.active} == {"head"}
    assert len(report.frozen) == len(report.entries) - 1

    path = tmp_path / "model.keras"
    transferkit.save_model(model, path)
    loaded = transferkit.load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model), snapshot(loaded)))
    assert loss_total(loaded) == pytest.approx(loss_total(model), rel=1e-6)

    loaded.get_layer(backbone.name).trainable = True
    expected = numpy_penalty(loaded, l2_names=KERNELS, l2=1e-4)
    assert loss_total(loaded) == pytest.approx(expected, rel=1e-5)
    transferkit.audit(loaded).verify(loaded)
