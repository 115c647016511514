"""MixUp, CutMix and AugMix of training batches, with Keras' own layers, seeded per batch.

Both mix pairs of images of a batch *and their labels*: MixUp blends two
images, `lam * a + (1 - lam) * b`; CutMix pastes a rectangle of `b` into `a`,
`lam` being the share of `a` left. Labels become soft one-hot vectors mixed
with the same `lam`, and per-sample weights (class weights) too:
`w = lam * w_a + (1 - lam) * w_b`. So they run on batches in the data
pipeline, not inside the model like the other augmentation layers; the
model's own layers (flips, rotations, ...) then transform the mixed images.
The model trains with categorical cross-entropy on the soft labels
(`FineTuner(mixing=...)` compiles it and gives the validation labels one-hot).

AugMix (Keras' `AugMix`) blends each image with chains of operations drawn
for the batch; labels stay as they are. It runs here rather than in the model
because Keras 3.15 draws its operations with Python's `random` (once, when
TensorFlow traces a model's graph): each batch gets a fresh layer seeded from
the batch's seed, with Python's `random` seeded alike for the call and its
state restored after. It comes before MixUp or CutMix.

`Mixing` draws each batch's pairs and weights from the seed it is given,
through `keras.layers.MixUp` / `keras.layers.CutMix`'s
`get_random_transformation(..., seed=...)` and `transform_*` methods (Keras
3.15); with both on, each batch is one or the other, at even odds.
`MixedBatches` wraps a dataset whose batch `i` depends on `i` alone
(`AugmentedFeatures`) and seeds batch `i`'s mixing from `(seed, i)`, so the
same seed gives the same mixed batches and a resumed run serves what an
uninterrupted one would.

Example:

>>> import numpy as np
>>> x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3))
>>> labels = np.eye(2)[[0, 1, 0, 1]]
>>> images, soft, _ = Mixing(mixup=0.2)(x, labels, seed=0)
>>> images.shape, soft.shape, bool(np.allclose(soft.sum(axis=1), 1))
((4, 8, 8, 3), (4, 2), True)
"""

import random

import keras
import numpy as np

from transferkit.errors import TransferkitError


class Mixing:
    """MixUp and/or CutMix (and AugMix) of one batch's images, one-hot labels and weights.

    Args:
        mixup: `alpha` of `keras.layers.MixUp`, in [0, 1]: `lam` is drawn from
            Beta(alpha, alpha). Defaults to 0 (off).
        cutmix: `factor` of `keras.layers.CutMix`, in [0, 1]. Defaults to 0
            (off).
        augmix: `factor` (severity) of `keras.layers.AugMix`, in [0, 1];
            images only, before the mixing of pairs. Defaults to 0 (off).

    With both on, each batch is mixed by one of them, drawn at even odds.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((2, 4, 4, 3)); x[1] = 255
    >>> images, labels, weights = Mixing(cutmix=1.0)(x, np.eye(2), np.array([1.0, 3.0]),
    ...                                              seed=3)
    >>> bool(np.allclose(labels[:, 1], images.mean(axis=(1, 2, 3)) / 255))
    True
    """

    def __init__(self, mixup=0.0, cutmix=0.0, augmix=0.0):
        for name, value in (("mixup", mixup), ("cutmix", cutmix), ("augmix", augmix)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                raise TransferkitError(f"Invalid {name}={value!r}: use a number in [0, 1].")
        if not (mixup or cutmix or augmix):
            raise TransferkitError("Mixing needs mixup, cutmix or augmix above 0.")
        self.mixup, self.cutmix, self.augmix = float(mixup), float(cutmix), float(augmix)
        self._layers = [layer for layer in (
            keras.layers.MixUp(alpha=self.mixup) if self.mixup else None,
            keras.layers.CutMix(factor=self.cutmix) if self.cutmix else None,
        ) if layer is not None]

    def __repr__(self):
        return f"Mixing(mixup={self.mixup:g}, cutmix={self.cutmix:g}, augmix={self.augmix:g})"

    def __call__(self, images, labels, sample_weight=None, *, seed):
        """Mixes a batch; returns `(images, labels, sample_weight)` as NumPy arrays.

        Args:
            images: `(n, height, width, channels)` images.
            labels: `(n, classes)` one-hot (or soft) labels.
            sample_weight: optional `n` weights, mixed like the labels.
                Defaults to `None` (returned as `None`).
            seed: an int or a sequence of ints: the same seed, the same
                mixing.
        """
        rng = np.random.default_rng(seed)
        images = keras.ops.convert_to_tensor(images, "float32")
        if self.augmix:
            images = self._augmix(images, int(rng.integers(2**31)))
        if not self._layers:
            return (keras.ops.convert_to_numpy(images), np.asarray(labels, "float32"),
                    sample_weight)
        layer = self._layers[int(rng.integers(len(self._layers)))]
        generator = keras.random.SeedGenerator(int(rng.integers(2**31)))
        mix = layer.get_random_transformation(images, training=True, seed=generator)
        if isinstance(layer, keras.layers.CutMix):
            # Keras 3.15 weighs the labels by the box's real-valued area; the
            # pixels pasted are what the image shows: their share, exactly.
            pasted = keras.ops.mean(keras.ops.cast(mix["batch_masks"], "float32"),
                                    axis=(1, 2, 3))
            mix = {**mix, "mix_weight": 1.0 - pasted}
        images = layer.transform_images(images, mix, training=True)
        labels = layer.transform_labels(keras.ops.convert_to_tensor(labels, "float32"), mix,
                                        training=True)
        if sample_weight is not None:
            weights = keras.ops.convert_to_tensor(sample_weight, "float32")[:, None]
            sample_weight = keras.ops.convert_to_numpy(
                layer.transform_labels(weights, mix, training=True))[:, 0]
        return (keras.ops.convert_to_numpy(images), keras.ops.convert_to_numpy(labels),
                sample_weight)

    def _augmix(self, images, seed):
        """Keras' AugMix of `images`, its draws all from `seed` (Python's `random` restored)."""
        layer = keras.layers.AugMix(value_range=(0, 255), factor=self.augmix, seed=seed)
        state = random.getstate()
        random.seed(seed)
        try:
            augment = layer.get_random_transformation(
                images, training=True, seed=keras.random.SeedGenerator(seed))
        finally:
            random.setstate(state)
        return layer.transform_images(images, augment, training=True)


class MixedBatches(keras.utils.PyDataset):
    """A dataset's training batches, mixed (`Mixing`), their labels one-hot.

    Batch `i` is `data[i]` mixed with a seed made of `(seed, i)`: the same
    seed gives the same batches, and each depends on its index alone when
    `data`'s do (`AugmentedFeatures`, which `i` counts over epochs).

    Args:
        data: a `keras.utils.PyDataset` of `(images, class indices[, weights])`
            batches, such as `AugmentedFeatures`; its `steps_per_epoch`,
            `batch_size` and `num_batches` are this one's, and so are its
            `workers`, `use_multiprocessing` and `max_queue_size`.
        mixing: a `Mixing`.
        num_classes: the number of classes (the one-hot width).
        seed: an int or a sequence of ints, or `None` (default) for fresh
            randomness.

    Example:

    >>> data = AugmentedFeatures([x], y, batch_size=32, seed=0)  # doctest: +SKIP
    >>> mixed = MixedBatches(data, Mixing(mixup=0.2), 2, seed=0)  # doctest: +SKIP
    >>> model.fit(mixed, steps_per_epoch=mixed.steps_per_epoch, epochs=3,
    ...           shuffle=False)  # doctest: +SKIP
    """

    def __init__(self, data, mixing, num_classes, *, seed=None):
        super().__init__(workers=data.workers, use_multiprocessing=data.use_multiprocessing,
                         max_queue_size=data.max_queue_size)
        if not isinstance(mixing, Mixing):
            raise TransferkitError(f"mixing must be a Mixing, got {mixing!r}.")
        self.data, self.mixing, self.num_classes = data, mixing, int(num_classes)
        self.steps_per_epoch = getattr(data, "steps_per_epoch", None)
        self.batch_size = getattr(data, "batch_size", None)
        self._entropy = np.random.SeedSequence(seed).entropy

    @property
    def num_batches(self):
        return self.data.num_batches

    def __getitem__(self, index):
        images, labels, *weights = self.data[index]
        one_hot = np.eye(self.num_classes, dtype="float32")[np.asarray(labels, dtype=np.int64)]
        seed = np.random.SeedSequence(self._entropy, spawn_key=(int(index),))
        images, one_hot, weights = self.mixing(images, one_hot, weights[0] if weights else None,
                                               seed=seed)
        return (images, one_hot) if weights is None else (images, one_hot, weights)
