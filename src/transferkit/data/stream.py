"""Images streamed from their files: decoded in parallel, batch by batch.

`ImageFiles` stands for the uint8 array `(N, height, width, 3)` that
`load_images` would return, without ever holding it: indexing it decodes the
images asked for, in parallel threads (Pillow releases the GIL while it
decodes and resizes). Training, feature extraction and prediction take it
wherever they take an array, so memory stays flat in the number of images:
features stream into the on-disk cache, and the layers that train on images
get them through `Batches` (in order) or `AugmentedFeatures` (shuffled per
epoch), `keras.utils.PyDataset`s that decode the next batches while the
model computes.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from transferkit.data.images import (
    DEFAULT_WORKERS,
    checked_size,
    decode_images,
    index_array,
    load_images,
)
from transferkit.errors import TransferkitError


class ImageFiles:
    """A read-only image array whose images are decoded from files when indexed.

    `x[i]` is one image `(height, width, 3)`; `x[a:b]`, `x[[i, j, ...]]` and
    `x[mask]` are `(k, height, width, 3)` uint8 arrays, their images decoded
    by `workers` threads. `len`, `shape`, `dtype` and `ndim` are those of the
    whole array; `np.asarray(x)` decodes every image (after checking that
    they fit in memory). `subset(indices)` is another `ImageFiles`, nothing
    decoded.

    Args:
        files: the image files, in order.
        size: an int for squares, or `(height, width)`.
        crop: `"center"` (default) or `None`, as in `load_image`.
        workers: threads that decode one indexing. Defaults to the number
            of CPU cores, at most 8.

    Example:

    >>> x = ImageFiles(["ants/1.jpg", "bees/2.jpg"], 224)  # doctest: +SKIP
    >>> x.shape, x[0:2].shape  # doctest: +SKIP
    ((2, 224, 224, 3), (2, 224, 224, 3))
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, files, size, *, crop="center", workers=None):
        if isinstance(files, (str, os.PathLike)):
            raise TransferkitError("files must be a list of image paths, not one path.")
        self.files = [Path(f) for f in files]
        self.size = checked_size(size, crop)
        self.crop = crop
        workers = DEFAULT_WORKERS if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise TransferkitError(f"workers must be an int >= 1, got {workers!r}.")
        self.workers = workers

    def __len__(self):
        return len(self.files)

    @property
    def shape(self):
        return (len(self.files), *self.size, 3)

    def __repr__(self):
        return (f"ImageFiles({len(self)} images at {self.size[0]}x{self.size[1]}, "
                f"crop={self.crop!r})")

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self._decode(self._indices(np.array([key])))[0]
        if isinstance(key, slice):
            return self._decode(range(*key.indices(len(self))))
        return self._decode(self._indices(key))

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("ImageFiles decodes its images: np.asarray cannot avoid a copy.")
        x = self.load()  # checks the memory first
        return x if dtype is None else x.astype(dtype, copy=False)

    def subset(self, indices):
        """The images at `indices` (integers, or a boolean mask): an `ImageFiles`."""
        return ImageFiles([self.files[i] for i in self._indices(indices)], self.size,
                          crop=self.crop, workers=self.workers)

    def load(self, verbose=0):
        """Every image decoded into one array, as `load_images` does."""
        return load_images(self.files, self.size, crop=self.crop, verbose=verbose,
                           workers=self.workers)

    def _indices(self, key):
        indices = index_array(key, len(self), "Index ImageFiles with an int, a slice,")
        bad = indices[(indices < -len(self)) | (indices >= len(self))]
        if bad.size:
            raise IndexError(f"index {bad[0]} is out of range for {len(self)} images")
        return indices % max(len(self), 1)

    def _decode(self, indices):
        return decode_images([self.files[i] for i in indices], self.size, crop=self.crop,
                             workers=self.workers)


class Batches(keras.utils.PyDataset):
    """`x` (and `y`) in order, `batch_size` at a time: for `predict` and validation.

    With `workers > 1` (the default for `ImageFiles`), Keras prepares the
    next batches in threads while the model computes.

    Args:
        x: the inputs: an array, or anything indexable by a slice with `len`
            (an `ImageFiles`).
        y: optional targets, one per input. Defaults to `None` (batches of
            `x` alone).
        batch_size: inputs per batch. Defaults to 32.
        **kwargs: `keras.utils.PyDataset`'s `workers`, `use_multiprocessing`,
            `max_queue_size`; `workers` defaults to 2 for `ImageFiles`, else 1.

    Example:

    >>> model.predict(Batches(ImageFiles(files, 224)))  # doctest: +SKIP
    """

    def __init__(self, x, y=None, *, batch_size=32, **kwargs):
        kwargs.setdefault("workers", 2 if isinstance(x, ImageFiles) else 1)
        super().__init__(**kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        if y is not None and len(y) != len(x):
            raise TransferkitError(
                f"x has {len(x)} inputs and y has {len(y)} targets: pass one per input.")
        self.x, self.y, self.batch_size = x, None if y is None else np.asarray(y), batch_size

    @property
    def num_batches(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.asarray(self.x[part]) if self.y is None else (np.asarray(self.x[part]),
                                                                self.y[part])


def batch_split():
    """How every batch is split here: `(multiple, part, parts)`.

    A batch must be a multiple of `multiple` rows (the devices it splits
    over, in all processes), and this process serves part `part` of `parts`
    equal parts of it. `(1, 0, 1)` unless a `keras.distribution` (JAX's
    `DataParallel`) or a TensorFlow strategy is in effect. JAX cannot split
    an uneven batch at all, and each of its processes feeds its own part;
    TensorFlow can, but would give a device fewer rows (or none) and average
    the devices' means as if they were alike, and each of its workers reads
    every global batch and keeps its part.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return tf.distribute.get_strategy().num_replicas_in_sync, 0, 1
        return 1, 0, 1
    distribution = keras.distribution.distribution()
    if distribution is None or getattr(distribution, "batch_dim_name", None) is None:
        return 1, 0, 1
    mesh = distribution.device_mesh
    devices = mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)]
    parts = max(distribution.num_processes, 1)
    if parts == 1:
        return devices, 0, 1
    import jax

    return devices, jax.process_index(), parts


def even_multiple():
    """The rows a batch this process feeds whole (for inference) must be a multiple of.

    `batch_split()`'s multiple over its parts: this process's devices.
    """
    multiple, _, parts = batch_split()
    return max(multiple // parts, 1)


def pad_rows(batch, multiple, at_least=0):
    """`batch` and copies of its first row: at least `at_least` rows, a multiple of `multiple`."""
    rows = max(len(batch), at_least)
    extra = rows + -rows % multiple - len(batch)
    if not extra:
        return batch
    return np.concatenate([batch, np.repeat(batch[:1], extra, axis=0)])


class EvenBatches(keras.utils.PyDataset):
    """Another dataset's `(x, y[, sample_weight])` batches, each a multiple of `multiple` rows.

    For engines that split every batch evenly across devices (JAX's
    `DataParallel`). A short batch (the last) gets copies of its first row
    with weight 0, and its real rows' weights are multiplied by
    padded/real size, so that the loss averaged over the padded batch
    (Keras' `"sum_over_batch_size"`) and its gradient equal those of the
    batch as it was, as do weighted metrics such as accuracy. An epoch's
    mean loss in the history weighs that batch by its padded size: it differs
    from the unpadded run's in the last digits when the last batch is short.
    Every batch carries weights (ones where there were none), so that all
    batches have the same structure.

    Args:
        data: a `keras.utils.PyDataset` of `(x, y)` or `(x, y, sample_weight)`
            batches, finite (`num_batches`) or endless (`steps_per_epoch`).
        multiple: the row count every batch must be a multiple of
            (`batch_split()`).
        part: which of `parts` equal parts of each padded batch to serve:
            this process's, when each process feeds its own (JAX with
            several processes). Defaults to 0.
        parts: how many. Defaults to 1: the whole batch.

    Example:

    >>> model.fit(EvenBatches(Batches(x, y, batch_size=30), 4))  # doctest: +SKIP
    """

    def __init__(self, data, multiple, part=0, parts=1):
        super().__init__(workers=getattr(data, "workers", 1),
                         max_queue_size=getattr(data, "max_queue_size", 10))
        self.data, self.multiple = data, int(multiple)
        self.part, self.parts = int(part), int(parts)
        if hasattr(data, "steps_per_epoch"):
            self.steps_per_epoch = data.steps_per_epoch

    @property
    def num_batches(self):
        return self.data.num_batches

    def on_epoch_begin(self):
        self.data.on_epoch_begin()

    def on_epoch_end(self):
        self.data.on_epoch_end()

    def __getitem__(self, index):
        x, y, *weights = self.data[index]
        n = len(x)
        weights = np.ones(n, "float32") if not weights else np.asarray(weights[0], "float32")
        extra = -n % self.multiple
        if extra:
            weights = np.concatenate([weights * ((n + extra) / n),
                                      np.zeros(extra, "float32")])
        # Copies: under TensorFlow's multi-worker strategy, batches that are
        # views of the caller's arrays were seen written into.
        x, y = pad_rows(np.array(x), self.multiple), pad_rows(np.array(y), self.multiple)
        if self.parts > 1:  # this process's rows of the global batch
            size = len(x) // self.parts
            mine = slice(self.part * size, (self.part + 1) * size)
            x, y, weights = x[mine], y[mine], weights[mine]
        return x, y, weights


def read_ahead(x, batch_size):
    """Yields `(start, x[start:start + batch_size])` over `x`, in order.

    For an `ImageFiles`, the next batch is decoded in a thread while the
    caller computes on this one; an array is sliced as it is.

    Example:

    >>> for start, batch in read_ahead(ImageFiles(files, 224), 32):  # doctest: +SKIP
    ...     scores[start:start + len(batch)] = model.predict_on_batch(batch)
    """
    starts = range(0, len(x), batch_size)
    if not isinstance(x, ImageFiles):
        for start in starts:
            yield start, np.asarray(x[start:start + batch_size])
        return
    with ThreadPoolExecutor(1) as ahead:
        pending = None
        try:
            for start in starts:
                batch = pending.result() if pending else x[start:start + batch_size]
                following = start + batch_size
                pending = ahead.submit(x.__getitem__, slice(following, following + batch_size)) \
                    if following < len(x) else None
                yield start, batch
        finally:
            if pending is not None:
                pending.cancel()
