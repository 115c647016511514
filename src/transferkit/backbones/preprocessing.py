"""ImageNet input preprocessing as layers, so a model takes raw [0, 255] RGB.

`keras.applications.*.preprocess_input` is a function users must remember
to call, the same way, at training and at serving time. Put inside the
model instead, it is saved with it. Every mode here is a fixed affine map per
channel (plus a channel flip for "caffe"), so it is written with built-in
Keras pieces that a `.keras` file reloads in safe mode, with no `Lambda` and
no custom class to import first:

- the per-channel `x * scale + offset` is one `Rescaling` layer (scale and
  offset broadcast per channel);
- the RGB -> BGR flip of "caffe" is `keras.ops.flip`, which a functional
  model records and reloads as a built-in operation, and which has no
  weights (a frozen 1x1 convolution would add a kernel that unfreezing,
  regularizing or weight-file loading would all have to step around).
"""

import keras
import numpy as np

# keras.applications.imagenet_utils' constants.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

# The name of the last preprocessing layer, so that a caller (or a test) can
# take the preprocessed image from a backbone: `get_layer(PREPROCESSING)`.
PREPROCESSING = "preprocessing"


def add_preprocessing(x, mode):
    """Applies `mode`'s ImageNet preprocessing to the symbolic images `x`.

    Args:
        x: a symbolic 4-D image tensor (from `keras.Input`), RGB in [0, 255].
        mode: `"caffe"`, `"tf"` or `"torch"`, as in
            `keras.applications.imagenet_utils.preprocess_input`.

    Returns:
        The preprocessed tensor; its last layer is named `"preprocessing"`.
    """
    channels_first = keras.config.image_data_format() == "channels_first"
    if mode == "tf":
        scale, offset = [1.0 / 127.5] * 3, [-1.0] * 3
    elif mode == "torch":
        scale = [1.0 / (255.0 * s) for s in _TORCH_STD]
        offset = [-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD)]
    elif mode == "caffe":
        x = keras.ops.flip(x, axis=1 if channels_first else -1)
        scale, offset = [1.0] * 3, [-m for m in _CAFFE_MEAN_BGR]
    else:
        raise ValueError(f"Unknown preprocessing mode {mode!r}.")
    # Per-channel values broadcast along the channel axis: (3,) for
    # channels-last, (3, 1, 1) for channels-first.
    shape = (3, 1, 1) if channels_first else (3,)
    return keras.layers.Rescaling(
        scale=np.reshape(scale, shape).tolist(),
        offset=np.reshape(offset, shape).tolist(),
        name=PREPROCESSING,
    )(x)
