"""Cached features: the frozen backbone's forward pass computed once, not every epoch.

While the backbone is frozen and the inputs are not augmented, every epoch
feeds the head the same features. `feature_extractor` cuts a model into the
part that computes them (input -> backbone -> pooling) and `head_model` into
the part that trains on them (dropout, head), sharing the original layer
objects, so training the head model trains the original model's head.
`extract_features` computes them in batches (from an array, or from images
streamed off disk, `ImageFiles`, the next batch decoded meanwhile; into a
`.npy` file when asked) and `FeatureCache` keeps them on disk under a key of everything that
changes them. With augmentation on, `extract_features(..., augment=...)`
computes randomly augmented copies of the features and `AugmentedFeatures`
serves copy `e % K` at epoch `e`.

Example:

>>> model = transferkit.build("efficientnet_lite0", 2)  # doctest: +SKIP
>>> features = extract_features(feature_extractor(model), x)  # doctest: +SKIP
>>> head = head_model(model)  # doctest: +SKIP
>>> head.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
>>> head.fit(features, y, epochs=10)  # doctest: +SKIP
"""

import hashlib
import json
import math
import os
import tempfile

import keras
import numpy as np

from transferkit._compat import inbound_nodes
from transferkit._walk import iter_layers
from transferkit.data.buckets import is_token_ids, sorted_batches
from transferkit.data.sampling import balanced_indices, inverse_frequency
from transferkit.data.stream import ImageFiles, even_multiple, pad_rows, read_ahead
from transferkit.errors import TransferkitError
from transferkit.models.precision import compute_dtypes
from transferkit.outputs import atomic_output
from transferkit.progress import Progress
from transferkit.saving import file_sha256

BACKBONE = "backbone"
AUGMENT = "augment"
_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
# Layers that are random in training. A frozen pretrained network's own ones
# (BERT's dropout) run in inference mode in the cached head phase, like its
# BatchNorm: its features are computed once, without noise, as the head will
# see them at prediction time. Those inserted on purpose (`insert_dropout`,
# named "dropout_after_*") are the regularization asked for: no cache then.
_INSERTED = "dropout_after_"
_STOCHASTIC = (keras.layers.Dropout, keras.layers.SpatialDropout1D,
               keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D,
               keras.layers.GaussianNoise, keras.layers.GaussianDropout,
               keras.layers.AlphaDropout)
_FORMAT = 1  # bump when the cache layout or key changes


def feature_extractor(model):
    """The sub-model from `model`'s input to its pooled backbone features.

    It skips the training-only `"augment"` layer and shares the backbone and
    pooling layers (and so their weights) with `model`.

    Args:
        model: a model made by `transferkit.build` (or `reuse`): input,
            optional `"augment"`, the nested `"backbone"`, optional global
            pooling, then the head layers.

    Returns:
        A functional `keras.Model`: images in, feature vectors out.

    Example:

    >>> model = transferkit.build("mobilenet_v3_small", 2, weights=None,
    ...                           input_shape=(32, 32, 3))  # doctest: +SKIP
    >>> feature_extractor(model).output.shape  # doctest: +SKIP
    (None, 576)
    """
    _, backbone, pool, _ = _parts(model)
    source = model.inputs[0]
    inputs = keras.Input(source.shape[1:], dtype=source.dtype, name="image")
    x = backbone(inputs)
    if pool is not None:
        x = pool(x)
    return keras.Model(inputs, x, name=f"{model.name}_features")


def head_model(model):
    """The model from pooled features to `model`'s output: its dropout and head.

    The layers are `model`'s own objects, so fitting the head model changes
    `model`'s head, and a `Dropout` behaves exactly as it does inside `model`.

    Args:
        model: a model made by `transferkit.build` (see `feature_extractor`).

    Returns:
        A functional `keras.Model`: feature vectors in, `model`'s outputs out.

    Example:

    >>> head = head_model(model)  # doctest: +SKIP
    >>> head.get_layer("head") is model.get_layer("head")  # doctest: +SKIP
    True
    """
    _, backbone, pool, rest = _parts(model)
    features = (backbone if pool is None else pool).output
    inputs = keras.Input(features.shape[1:], dtype=features.dtype, name="features")
    x = inputs
    for layer in rest:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def cache_refusal(model, *, allow_augmentation=False):
    """Why `model`'s frozen phases cannot train on cached features, or `None`.

    Args:
        model: a model made by `transferkit.build` (see `feature_extractor`).
        allow_augmentation: when `True`, an `"augment"` layer is no reason
            (the caller computes augmented copies of the features, see
            `AugmentedFeatures`); the backbone's reasons still are. Defaults
            to `False`.

    Example:

    >>> model = transferkit.build("mobilenet_v2", 2,
    ...     augmentation=transferkit.get_augmentation("default"))  # doctest: +SKIP
    >>> cache_refusal(model)  # doctest: +SKIP
    'augmentation on'
    >>> cache_refusal(model, allow_augmentation=True) is None  # doctest: +SKIP
    True
    """
    try:
        before, backbone, _, _ = _parts(model)
    except TransferkitError as error:
        return f"no backbone/head split ({error})"
    if before and not allow_augmentation:
        return "augmentation on"
    for name, layer, _ in iter_layers(backbone):
        if isinstance(layer, _STOCHASTIC) and layer.name.startswith(_INSERTED) \
                and getattr(layer, "rate", getattr(layer, "stddev", 0)):
            return f"the backbone's {name} is random in training"
        if getattr(layer, "activity_regularizer", None) is not None:
            return f"the backbone's {name} has an activity penalty"
    return None


def augmentation_layer(model):
    """`model`'s training-only `"augment"` layer in front of the backbone, or `None`.

    Example:

    >>> augmentation_layer(transferkit.build("mobilenet_v2", 2)) is None  # doctest: +SKIP
    True
    """
    before, _, _, _ = _parts(model)
    return before[0] if before else None


def extract_features(extractor, x, *, batch_size=32, path=None, verbose=0, augment=None):
    """Runs `extractor` over `x` in batches; returns the features.

    Args:
        extractor: a model, e.g. `feature_extractor(model)`.
        x: the inputs, an array, an `ImageFiles` (decoded batch by batch,
            the next one while this one computes), or anything sliceable
            with `len`. Token ids for a model that takes any length are run
            in batches of similar lengths, each cut to its longest text
            (`transferkit.data.buckets`).
        batch_size: samples per forward pass. Defaults to 32.
        path: optional `.npy` file to stream the features into, so that the
            features of a data set larger than memory never sit in memory at
            once. Written to a temporary file beside it, renamed when
            complete. Defaults to `None` (an in-memory array).
        verbose: 1 shows the pass's progress (`transferkit.progress`: a bar
            on a terminal, else one line at the end). Defaults to 0.
        augment: optional layer (a model's `"augment"`, see
            `augmentation_layer`) that each batch goes through in training
            mode before `extractor`: the result is one randomly augmented
            copy of the features, a new one each call (repeatable after
            `keras.utils.set_random_seed` when the calls come in the same
            order). Defaults to `None` (no augmentation).

    Returns:
        A NumPy array (memory-mapped, read-only, when `path` is given) of
        shape `(len(x),) + extractor.output.shape[1:]`.

    Example:

    >>> features = extract_features(feature_extractor(model), x,
    ...                             path="cache/train.npy")  # doctest: +SKIP
    >>> copy = extract_features(feature_extractor(model), x,
    ...                         augment=augmentation_layer(model))  # doctest: +SKIP
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    output = extractor.outputs[0]
    source = extractor.inputs[0].dtype
    shape = (len(x),) + tuple(output.shape[1:])
    dtype = keras.backend.standardize_dtype(output.dtype)
    if path is None:
        out, tmp = np.empty(shape, dtype), None
    else:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(suffix=".npy.tmp", dir=folder)
        os.close(handle)
    try:
        if tmp is not None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        bar = Progress(len(x), "Extracting features", unit="inputs",
                       delay=0.0 if verbose else math.inf)
        multiple = even_multiple()
        if augment is None and is_token_ids(x, extractor):
            # Texts by length, each batch cut to its longest: padding costs little.
            for take, width in sorted_batches(x, batch_size):
                out[take] = keras.ops.convert_to_numpy(extractor.predict_on_batch(
                    pad_rows(x[take, :width], multiple)))[:len(take)]
                bar.update(len(take))
            batches = ()
        else:
            batches = read_ahead(x, batch_size)
        for start, batch in batches:
            if augment is not None:
                batch = keras.ops.convert_to_numpy(augment(
                    keras.ops.convert_to_tensor(batch, dtype=source), training=True))
            n = len(batch)
            # The last, partial batch of several, padded to the full size: one
            # traced shape, not a second trace (~0.7 s for a backbone); and
            # every batch split evenly over the devices. The rows are
            # independent in inference mode.
            batch = pad_rows(batch, multiple, at_least=batch_size if start else 0)
            out[start:start + n] = keras.ops.convert_to_numpy(
                extractor.predict_on_batch(batch))[:n]
            bar.update(n)
        bar.close()
        if tmp is None:
            return out
        out.flush()
        del out
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            os.remove(tmp)
    return np.load(path, mmap_mode="r")


class AugmentedFeatures(keras.utils.PyDataset):
    """Augmented copies of the features, cycled per epoch: epoch `e` serves copy `e % K`.

    An endless stream, to fit with `steps_per_epoch=data.steps_per_epoch`
    and `shuffle=False`: batch `i` is batch `i % steps_per_epoch` of epoch
    `i // steps_per_epoch`. Which copy and samples a batch holds depends on
    its index alone, not on epoch callbacks (a prefetching backend reads
    ahead of them). Each epoch serves every sample once, in an order
    shuffled by a NumPy `Generator` seeded with `(seed, epoch)`; with
    `balanced=True` it serves `n` samples drawn from that generator with
    replacement, every class equally likely (`transferkit.data.sampling`).

    Args:
        copies: a list of K feature arrays of the same shape `(n, ...)`, e.g.
            K calls of `extract_features(extractor, x, augment=...)`
            (memory-mapped arrays are read batch by batch).
        y: the `n` targets.
        sample_weight: optional `n` per-sample weights. Defaults to `None`.
        batch_size: samples per batch (the last of an epoch may be smaller).
            Defaults to 32.
        seed: an int or a sequence of ints for the shuffling, or `None`
            (default) for fresh randomness.
        balanced: draw each epoch's samples with probability inverse to
            their class's frequency (`y` holds class indices). Defaults to
            `False`.
        **kwargs: `keras.utils.PyDataset`'s `workers`, `use_multiprocessing`,
            `max_queue_size`.

    Attributes:
        steps_per_epoch: batches per epoch, `ceil(n / batch_size)`.

    Example:

    >>> augment = augmentation_layer(model)  # doctest: +SKIP
    >>> copies = [extract_features(feature_extractor(model), x, augment=augment)
    ...           for _ in range(4)]  # doctest: +SKIP
    >>> data = AugmentedFeatures(copies, y, batch_size=32, seed=0)  # doctest: +SKIP
    >>> head_model(model).fit(data, steps_per_epoch=data.steps_per_epoch,
    ...                       epochs=8, shuffle=False)  # doctest: +SKIP
    """

    def __init__(self, copies, y, *, sample_weight=None, batch_size=32, seed=None,
                 balanced=False, **kwargs):
        super().__init__(**kwargs)
        copies = list(copies)
        if not copies:
            raise TransferkitError("AugmentedFeatures needs at least one copy of the features.")
        if any(np.shape(c) != np.shape(copies[0]) for c in copies):
            raise TransferkitError(
                "The augmented copies differ in shape: compute each from the same inputs."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        n = len(copies[0])
        y = np.asarray(y)
        if n < 1 or len(y) != n:
            raise TransferkitError(
                f"The copies have {n} samples and y has {len(y)}: pass one target per sample."
            )
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if len(sample_weight) != n:
                raise TransferkitError(
                    f"sample_weight has {len(sample_weight)} values for {n} samples: "
                    "pass one per sample."
                )
        self.copies, self.y, self.sample_weight = copies, y, sample_weight
        self.batch_size, self.balanced = batch_size, bool(balanced)
        if self.balanced:
            inverse_frequency(y)  # class indices, checked now
        self.steps_per_epoch = math.ceil(n / batch_size)
        self._entropy = np.random.SeedSequence(seed).entropy
        self._last = None  # (epoch, order): each epoch's order is drawn once

    @property
    def num_batches(self):
        return None  # endless: epochs are counted by steps_per_epoch

    def order(self, epoch):
        """The sample indices of epoch `epoch`, in the order they are served."""
        last = self._last
        if last is None or last[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence(self._entropy,
                                                               spawn_key=(epoch,)))
            order = balanced_indices(self.y, rng) if self.balanced \
                else rng.permutation(len(self.y))
            last = self._last = (epoch, order)
        return last[1]

    def __getitem__(self, index):
        epoch, step = divmod(int(index), self.steps_per_epoch)
        take = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        batch = (np.asarray(self.copies[epoch % len(self.copies)][take]), self.y[take])
        if self.sample_weight is not None:
            batch += (self.sample_weight[take],)
        return batch


class FeatureCache:
    """Features on disk, keyed by everything that changes them.

    The key hashes the backbone's weights, the extractor's input and output
    shapes, a free-form `preprocessing` text (e.g. the image size and crop)
    and the data: a hash of the array's bytes, or, when `files` is given,
    each file's path, size and modification time. A changed input is a new
    key and is computed afresh. Each entry is `<key>.npy` plus a `<key>.json`
    holding its shape, dtype and SHA-256; an entry that does not match (a
    truncated or corrupt file) is rebuilt, never used.

    Args:
        directory: the cache folder (created when needed).

    Attributes:
        last_hit_: whether the last `features` call read the cache.

    Example:

    >>> cache = FeatureCache("~/.cache/transferkit/features")  # doctest: +SKIP
    >>> f = cache.features(feature_extractor(model), x, files=folder.files,
    ...                    preprocessing="224 resize")  # doctest: +SKIP
    """

    def __init__(self, directory):
        self.directory = os.path.expanduser(os.fspath(directory))
        self.last_hit_ = None

    def key(self, extractor, x=None, *, files=None, preprocessing=None):
        """The cache key (hex) of `extractor`'s features of `x` (or `files`)."""
        if files is None and x is None:
            raise TransferkitError("FeatureCache needs the data: pass x or files.")
        fields = {
            "format": _FORMAT,
            "weights": weights_hash(extractor),
            "input": [str(extractor.inputs[0].dtype), list(extractor.inputs[0].shape[1:])],
            "output": list(extractor.outputs[0].shape[1:]),
            "preprocessing": None if preprocessing is None else str(preprocessing),
        }
        computes = compute_dtypes(extractor)
        if computes != ["float32"]:  # mixed precision: other features (float32 keys unchanged)
            fields["compute"] = computes
        if files is not None:
            fields["data"] = _files_identity(files)
        elif isinstance(x, ImageFiles):  # its files and how they are decoded
            fields["data"] = _files_identity(x.files)
            fields["decoded"] = [list(x.size), x.crop]
        else:
            fields["data"] = _array_identity(x)
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def features(self, extractor, x, *, files=None, preprocessing=None, batch_size=32,
                 verbose=0):
        """The features of `x`: read from the cache if valid, else extracted and stored.

        Args:
            extractor: a model, e.g. `feature_extractor(model)`.
            x: the inputs.
            files: optional list of the files `x` was read from: then the
                key uses their paths, sizes and times instead of hashing `x`.
            preprocessing: optional text describing how `x` was made from the
                files (size, crop), part of the key. Defaults to `None`.
            batch_size: extraction batch size. Defaults to 32.
            verbose: 1 shows the extraction's progress bar. Defaults to 0.

        Returns:
            A read-only memory-mapped NumPy array.
        """
        key = self.key(extractor, x, files=files, preprocessing=preprocessing)
        path = os.path.join(self.directory, f"{key}.npy")
        found = self._read(path)
        self.last_hit_ = found is not None
        if found is not None:
            return found
        features = extract_features(extractor, x, batch_size=batch_size, path=path,
                                    verbose=verbose)
        _write_json(path[:-4] + ".json", {
            "shape": list(features.shape), "dtype": features.dtype.str,
            "sha256": file_sha256(path),
        })
        return features

    def _read(self, path):
        """The entry at `path` if it is complete and intact, else `None`."""
        try:
            with open(path[:-4] + ".json") as handle:
                meta = json.load(handle)
            if file_sha256(path) != meta["sha256"]:
                return None
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if list(array.shape) != meta["shape"] or array.dtype.str != meta["dtype"]:
            return None
        return array


def weights_hash(model):
    """SHA-256 (hex) of `model`'s weight values, in `model.weights` order."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _parts(model):
    """`(layers before the backbone, backbone, pooling or None, head layers)`."""
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None) \
            or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TransferkitError("Expected a built single-input, single-output keras.Model.")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    names = [layer.name for layer in layers]
    if BACKBONE not in names:
        raise TransferkitError(f"Model {model.name!r} has no nested 'backbone' layer.")
    index = names.index(BACKBONE)
    before, backbone, after = layers[:index], layers[index], layers[index + 1:]
    if any(layer.name != AUGMENT for layer in before):
        raise TransferkitError(
            f"Model {model.name!r} has layers other than 'augment' before its backbone."
        )
    pool = after[0] if after and isinstance(after[0], _POOLING) else None
    rest = after[1:] if pool is not None else after
    previous = [model.layers[0]] + layers
    if len(model.layers) != len(layers) + 1 or not all(
        any([parent.operation for parent in node.parent_nodes] == [before_it]
            for node in inbound_nodes(layer))
        for layer, before_it in zip(layers, previous)
    ):
        raise TransferkitError(f"Model {model.name!r} is not a plain chain of layers.")
    return before, backbone, pool, rest


def _array_identity(x):
    array = np.ascontiguousarray(x)
    digest = hashlib.sha256(array.view(np.uint8).reshape(-1) if array.size else b"")
    return [array.dtype.str, list(array.shape), digest.hexdigest()]


def files_digest(files):
    """A SHA-256 of each file's path, size and modification time: which data it was.

    What `FeatureCache` keys on; a resumed run checks its data with it too.
    """
    text = json.dumps(_files_identity(files))
    return hashlib.sha256(text.encode()).hexdigest()


def _files_identity(files):
    identity = []
    for file in files:
        stat = os.stat(file)
        identity.append([os.path.abspath(os.fspath(file)), stat.st_size, stat.st_mtime_ns])
    return identity


def _write_json(path, value):
    with atomic_output(path) as tmp:
        with open(tmp, "w") as handle:
            json.dump(value, handle)
