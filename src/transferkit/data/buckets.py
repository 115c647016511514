"""Token ids in batches of similar lengths, each cut to its longest text.

A text model whose input takes any length (`(None,)`) costs what its batch
is long. Texts padded to one `max_length` (512 for IMDB reviews, whose median
is ~230 tokens) spend most of the compute on padding; batches of texts of
similar lengths, each cut to its longest text (rounded up to a multiple of
64, so that a backend traces at most 8 shapes), spend little.
"""

import math

import keras
import numpy as np

from transferkit.data.sampling import balanced_indices, inverse_frequency
from transferkit.errors import TransferkitError

# Batch widths are multiples of this: few distinct shapes to trace.
WIDTH_STEP = 64
# Training batches are formed within pools of this many batches of shuffled
# texts, sorted by length: similar lengths, yet a different mix each epoch.
POOL_BATCHES = 50


def token_counts(ids, pad_id=0):
    """The tokens of each row of `ids` up to its last non-padding one.

    Example:

    >>> token_counts(np.array([[101, 7, 102, 0], [101, 102, 0, 0]]))
    array([3, 2])
    """
    ids = np.asarray(ids)
    real = ids != pad_id
    last = ids.shape[1] - np.argmax(real[:, ::-1], axis=1)
    return np.where(real.any(axis=1), last, 0)


def batch_width(longest, limit, step=WIDTH_STEP):
    """`longest` rounded up to a multiple of `step`, at most `limit`.

    Example:

    >>> batch_width(70, 512), batch_width(500, 512), batch_width(0, 48)
    (128, 512, 48)
    """
    return int(min(limit, max(step, step * math.ceil(longest / step))))


def is_token_ids(x, model):
    """Whether `x` is token ids (2-D integers) for a `model` taking any length."""
    shape = tuple(model.inputs[0].shape)
    return (isinstance(x, np.ndarray) and x.ndim == 2 and np.issubdtype(x.dtype, np.integer)
            and len(shape) == 2 and shape[1] is None)


def sorted_batches(ids, batch_size):
    """`[(indices, width)]`: the rows of `ids` by length, in batches, for inference.

    Example:

    >>> [(i.tolist(), w) for i, w in sorted_batches(np.array([[1, 1, 0], [1, 0, 0]]), 1)]
    [([1], 3), ([0], 3)]
    """
    lengths = token_counts(ids)
    order = np.argsort(lengths, kind="stable")
    return [(take, batch_width(lengths[take].max(), ids.shape[1]))
            for take in (order[i:i + batch_size] for i in range(0, len(order), batch_size))]


class LengthBuckets(keras.utils.PyDataset):
    """Training batches of token ids of similar lengths, shuffled per epoch.

    An endless stream, to fit with `steps_per_epoch=data.steps_per_epoch` and
    `shuffle=False`, like `transferkit.training.features.AugmentedFeatures`:
    batch `i` is batch `i % steps_per_epoch` of epoch `i // steps_per_epoch`,
    decided by its index alone. Each epoch shuffles the texts with a NumPy
    `Generator` seeded with `(seed, epoch)`, sorts each pool of
    `POOL_BATCHES` batches by length, cuts it into batches and shuffles the
    batches; a batch is cut to its longest text (`batch_width`). With
    `balanced=True` an epoch is `n` texts drawn with replacement, every class
    equally likely (`transferkit.data.sampling`), pooled the same way. With
    `shuffle=False` (validation) it is one pass, its batches in length order.

    Args:
        x: token ids, an int array `(n, max_length)` padded with 0.
        y: the `n` targets.
        sample_weight: optional `n` weights. Defaults to `None`.
        batch_size: texts per batch. Defaults to 32.
        seed: an int or a sequence of ints, or `None` for fresh randomness.
        shuffle: whether each epoch has its own order. Defaults to `True`.
        balanced: draw each epoch's texts by inverse class frequency (`y`
            holds class indices; needs `shuffle`). Defaults to `False`.
        **kwargs: `keras.utils.PyDataset`'s `workers`, `use_multiprocessing`,
            `max_queue_size`.

    Example:

    >>> data = LengthBuckets(ids, y, batch_size=32, seed=0)  # doctest: +SKIP
    >>> model.fit(data, steps_per_epoch=data.steps_per_epoch, epochs=3,
    ...           shuffle=False)  # doctest: +SKIP
    """

    def __init__(self, x, y, *, sample_weight=None, batch_size=32, seed=None, shuffle=True,
                 balanced=False, **kwargs):
        super().__init__(**kwargs)
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or len(y) != len(x) \
                or not len(x):
            raise TransferkitError(
                f"LengthBuckets takes token ids (n, length) and n targets; got x of shape "
                f"{x.shape} ({x.dtype}) and {len(y)} targets.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        self.x, self.y = x, y
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.batch_size, self.shuffle, self.balanced = batch_size, shuffle, bool(balanced)
        if self.balanced:
            if not shuffle:
                raise TransferkitError("LengthBuckets: balanced=True needs shuffle=True.")
            inverse_frequency(y)  # class indices, checked now
        self.lengths = token_counts(x)
        self.steps_per_epoch = math.ceil(len(x) / batch_size)
        self._entropy = np.random.SeedSequence(seed).entropy
        self._last = None  # (epoch, batches): each epoch's plan is drawn once

    @property
    def num_batches(self):
        # Training: endless, epochs counted by steps_per_epoch; else one pass.
        return None if self.shuffle else self.steps_per_epoch

    def batches(self, epoch):
        """Epoch `epoch`'s batches: a list of index arrays, in the order served."""
        epoch = epoch if self.shuffle else 0
        if self._last is not None and self._last[0] == epoch:
            return self._last[1]
        if not self.shuffle:
            plan = [take for take, _ in sorted_batches(self.x, self.batch_size)]
        else:
            rng = np.random.default_rng(np.random.SeedSequence(self._entropy,
                                                               spawn_key=(epoch,)))
            order = balanced_indices(self.y, rng) if self.balanced \
                else rng.permutation(len(self.x))
            pool = self.batch_size * POOL_BATCHES
            plan = []
            for begin in range(0, len(order), pool):
                chunk = order[begin:begin + pool]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                plan += [chunk[i:i + self.batch_size]
                         for i in range(0, len(chunk), self.batch_size)]
            plan = [plan[i] for i in rng.permutation(len(plan))]
        self._last = (epoch, _varied_start(plan, self._width))
        return self._last[1]

    def _width(self, take):
        return batch_width(self.lengths[take].max(), self.x.shape[1])

    def __getitem__(self, index):
        epoch, step = divmod(int(index), self.steps_per_epoch)
        take = self.batches(epoch)[step]
        batch = (self.x[take, :self._width(take)], self.y[take])
        if self.sample_weight is not None:
            batch += (self.sample_weight[take],)
        return batch


def _varied_start(plan, width):
    """`plan` with its first two batches of different widths, where widths differ.

    Keras' TensorFlow adapter fixes a `PyDataset`'s shapes from its first
    two batches: a length that differs between them is left free (`None`),
    one that does not is fixed, and a wider batch later fails. So the second
    batch is swapped with the first one of another width.
    """
    widths = [width(take) for take in plan]
    if len(plan) >= 2 and widths[0] == widths[1]:
        other = next((i for i, w in enumerate(widths) if w != widths[0]), None)
        if other is not None:
            plan = list(plan)
            plan[1], plan[other] = plan[other], plan[1]
    return plan
