"""Every use of Keras internals (and KerasHub's, KaggleHub's), behind one door.

Keras has no public API for some of what transferkit needs: walking a
composite layer's sublayers, reading a functional model's graph, telling
whether a `.keras` file stores a model's layers. Each such use lives here,
says which release it was checked against, and is pinned by
`tests/test_compat.py`, which fails with a message naming the internal when a
release changes it (rather than letting transferkit be silently wrong).
Everything else in transferkit goes through `keras` and `keras.ops` only.

Checked against Keras 3.15.1, KerasHub 0.32.0 and KaggleHub 1.0.2.
"""

import os

import keras

# Checked on Keras 3.15.1: `Functional` is not exported; `keras.Model(inputs,
# outputs)` returns an instance of it.
from keras.src.models.functional import Functional

# Checked on Keras 3.15.1: `keras_home()` (the `KERAS_HOME` folder, read once
# at import) is not exported, and `keras.utils.get_file` reads it per call.
from keras.src.backend import config as _keras_config

# Dense, EinsumDense and Embedding keep their variable in a private attribute
# behind a LoRA-aware property: once LoRA is enabled, `layer.kernel` is the
# tensor `_kernel + lora_a @ lora_b`, not a variable. Checked on Keras 3.15.1.
LORA_BASE_ATTRIBUTES = {"kernel": "_kernel", "embeddings": "_embeddings"}

# The packages KerasHub 0.32.0 downloads presets with: KaggleHub for
# `kaggle://`, Hugging Face Hub for `hf://`, both over requests/urllib3.
PRESET_DOWNLOADERS = ("kagglehub", "huggingface_hub", "requests", "urllib3")

# The message `keras.utils.get_file` raises a network failure with (a bare
# `Exception`). Checked on Keras 3.15.1.
GET_FILE_FAILURE = "URL fetch failure"


# ------------------------------------------------------------ layers and graphs


def has_functional_config(layer):
    """Whether `layer` is a functional model whose config is its graph of layers.

    True for models made by `keras.Model(inputs, outputs)` and for subclasses
    of them that keep Keras' own `get_config`; false for subclasses that
    override it (KerasHub backbones, rebuilt from their arguments), whose
    layers' configs a `.keras` file does not store. Checked on Keras 3.15.1.

    Args:
        layer: any `keras.layers.Layer`.

    Example:

    >>> has_functional_config(keras.Model(inputs, outputs))  # doctest: +SKIP
    True
    """
    return isinstance(layer, Functional) and type(layer).get_config is Functional.get_config


def is_functional(layer):
    """Whether `layer` is a functional model (or a subclass, such as a KerasHub backbone).

    Such a model runs a graph of layers that `keras.models.clone_model` can
    rebuild with a `clone_function`. Checked on Keras 3.15.1.

    Example:

    >>> is_functional(keras.Model(inputs, outputs))  # doctest: +SKIP
    True
    """
    return isinstance(layer, Functional)


def sublayers(layer):
    """The layers `layer` holds directly (not theirs), in the order it tracks them.

    Keras lists the layers of a model (`model.layers`) but has no public list
    for a composite layer's (`MultiHeadAttention`'s `Dense` and `Dropout`, a
    KerasHub `TransformerEncoder`'s). Checked on Keras 3.15.1
    (`Layer._flatten_layers`).

    Args:
        layer: any `keras.layers.Layer`.

    Example:

    >>> [s.name for s in sublayers(keras.layers.MultiHeadAttention(2, 4))]  # doctest: +SKIP
    """
    return layer._flatten_layers(include_self=False, recursive=False)


def graph_nodes(model):
    """Yields `(layer, input_tensors, output_tensors)` for each call in `model`'s graph.

    Only `model`'s own graph: a layer shared with other models yields only
    its calls in this one. Keras has no public graph API; this reads the
    nodes the way `keras.models.clone_model` does. Checked on Keras 3.15.1
    (`Functional._nodes_by_depth`, `Sequential._functional`).

    Args:
        model: a built functional or sequential `keras.Model`.

    Example:

    >>> readers = [layer for layer, _, _ in graph_nodes(model)]  # doctest: +SKIP
    """
    functional = model._functional if isinstance(model, keras.Sequential) else model
    for nodes in functional._nodes_by_depth.values():
        for node in nodes:
            yield node.operation, list(node.input_tensors), list(node.outputs)


def source_layer(tensor):
    """The layer whose call made the symbolic `tensor` (an `InputLayer` for an input).

    Checked on Keras 3.15.1 (`KerasTensor._keras_history`).

    Example:

    >>> source_layer(model.inputs[0]).name  # doctest: +SKIP
    'image'
    """
    return tensor._keras_history.operation


def set_own_trainable(model, trainable):
    """Sets `model`'s own `trainable` flag, leaving its layers' flags as they are.

    The public setter sets every layer's flag (and each variable's) too. For a
    model rebuilt around shared layers, which keep their own flags, only the
    model's flag is to be copied. Checked on Keras 3.15.1 (`Layer._trainable`,
    which the `trainable` property returns).

    Args:
        model: a `keras.Model`.
        trainable: bool.

    Example:

    >>> set_own_trainable(rebuilt, original.trainable)  # doctest: +SKIP
    """
    model._trainable = bool(trainable)


def run_graph(model, inputs):
    """Calls `model`'s layers on symbolic `inputs` one by one, returning its outputs.

    Calling a functional model on tensors nests it as one layer; running its
    graph instead puts its layers (the same objects, so the same weights)
    into the calling model, under their own names. This is Keras' own graph
    walk, as `keras.models.clone_model` uses it, with each layer kept as it
    is instead of cloned; `clone_model` itself cannot do it, since it wraps
    the result in a model whose inputs must be `keras.Input` tensors.
    Checked on Keras 3.15.1 (`Function._run_through_graph`).

    Args:
        model: a functional `keras.Model`.
        inputs: symbolic tensors, one per `model.inputs`, in that order.

    Returns:
        The outputs, in the structure of `model.output`.

    Example:

    >>> features = run_graph(backbone, [rescaled_images])  # doctest: +SKIP
    """
    return model._run_through_graph(list(inputs), operation_fn=lambda layer: layer)


# ------------------------------------------------------------------ downloads


def keras_cache_dir():
    """The `KERAS_HOME` folder (default `~/.keras`), never a shared fallback.

    Keras reads `KERAS_HOME` once, when it is imported (default `~/.keras`).
    It falls back to the world-writable `/tmp/.keras` twice: at import, when
    `~` cannot be written and `KERAS_HOME` is unset, and in `get_file`, when
    the folder cannot be written. Neither is followed here: anyone can put
    files in `/tmp/.keras`, so transferkit's own caches neither read nor write
    there. The folder returned may not be writable; callers that write check.
    Checked on Keras 3.15.1.

    Example:

    >>> os.path.join(keras_cache_dir(), "models")  # doctest: +SKIP
    '/home/me/.keras/models'
    """
    base = os.path.expanduser(_keras_config.keras_home())
    # Keras' import-time fallback; kept only if the user asked for it by name.
    shared = os.path.join("/tmp", ".keras")
    if base == shared and os.environ.get("KERAS_HOME") != shared:
        base = os.path.expanduser(os.path.join("~", ".keras"))
    return base


def raised_in_get_file(error):
    """Whether `error` came out of `keras.utils.get_file` (a download or its hash check).

    `get_file` raises a bare `Exception` for network failures and a
    `ValueError` for a bad hash, so the type does not tell; the traceback
    does. (Every `keras.applications` family downloads its weights with it.)
    Checked on Keras 3.15.1.

    Args:
        error: an exception that was raised (with its `__traceback__`).

    Example:

    >>> raised_in_get_file(error)  # doctest: +SKIP
    True
    """
    code = keras.utils.get_file.__code__
    return any(frame.f_code is code for frame in _frames(error)) or str(error).startswith(
        GET_FILE_FAILURE
    )


def raised_in_preset_download(error):
    """Whether `error` was raised by what KerasHub downloads presets with.

    That is KaggleHub, the Hugging Face Hub, or requests/urllib3 under them
    (`PRESET_DOWNLOADERS`), as opposed to an error in reading the files.
    Checked on KerasHub 0.32.0.

    Args:
        error: an exception that was raised (with its `__traceback__`).

    Example:

    >>> raised_in_preset_download(error)  # doctest: +SKIP
    False
    """
    for frame in _frames(error):
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in PRESET_DOWNLOADERS:
            return True
    return False


def _frames(error):
    tb = error.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def kaggle_cached_path(handle):
    """Where KaggleHub keeps the files of the versioned model `handle`.

    KaggleHub has no public API for it. Checked on KaggleHub 1.0.2
    (`kagglehub.cache.get_cached_path`, `kagglehub.handle.parse_model_handle`).

    Args:
        handle: `"owner/model/framework/variation/version"`, as after
            `kaggle://`.

    Raises:
        ImportError: KaggleHub is missing.

    Example:

    >>> kaggle_cached_path("keras/resnetv1/keras/resnet_50_imagenet/3")  # doctest: +SKIP
    '/home/me/.cache/kagglehub/models/keras/resnetv1/keras/resnet_50_imagenet/3'
    """
    from kagglehub.cache import get_cached_path
    from kagglehub.handle import parse_model_handle

    return get_cached_path(parse_model_handle(handle))


def kaggle_files_cached(handle, files):
    """Whether KaggleHub holds every one of `files` of `handle`, completely downloaded.

    Checked on KaggleHub 1.0.2 (`kagglehub.cache.Cache.load_from_cache`,
    which returns `None` for a missing or incomplete file).

    Args:
        handle: `"owner/model/framework/variation/version"`.
        files: file names inside the model's folder.

    Raises:
        ImportError: KaggleHub is missing.

    Example:

    >>> kaggle_files_cached(handle, ["config.json"])  # doctest: +SKIP
    False
    """
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    parsed, cache = parse_model_handle(handle), Cache()
    return all(cache.load_from_cache(parsed, f) is not None for f in files)


# ------------------------------------------------------------------ optimizers


def public_optimizer_class(optimizer):
    """The public Keras class of `optimizer` (`keras.optimizers.SGD`, ...).

    Under PyTorch (and other backends), `keras.optimizers.SGD()` is an
    instance of a private backend subclass
    (`keras.src.backend.torch.optimizers.torch_sgd.SGD`), and a wrapped
    optimizer names its base in `_base_optimizer`. Checked on Keras 3.15.1.
    """
    cls = getattr(type(optimizer), "_base_optimizer", type(optimizer))
    for candidate in cls.__mro__:
        if not candidate.__module__.startswith("keras.src.backend."):
            return candidate
    return cls


def learning_rate_schedule(optimizer):
    """The `LearningRateSchedule` object an optimizer was made with, or its rate variable.

    `get_config` gives only the schedule's config, which an unregistered class
    cannot be rebuilt from; Keras keeps the object in `_learning_rate`.
    Checked on Keras 3.15.1.
    """
    return optimizer._learning_rate


# Keras applies decoupled weight decay in `BaseOptimizer._apply_weight_decay
# (variables)`, called by `apply` before the update step, with the optimizer's
# one learning rate; a subclass overrides it to decay each group of variables
# at its own rate (`transferkit.optim.optimizers`). Checked on Keras 3.15.1.
WEIGHT_DECAY_HOOK = "_apply_weight_decay"


def apply_weight_decay(parent, variables):
    """Keras' own weight decay of `variables`, through `parent` (a `super()` object)."""
    return getattr(parent, WEIGHT_DECAY_HOOK)(variables)


def inbound_nodes(layer):
    """The nodes where `layer` is called in the functional graphs it belongs to.

    Keras keeps them in `_inbound_nodes` (each with `parent_nodes`). Checked
    on Keras 3.15.1.
    """
    return layer._inbound_nodes


def bound_multi_worker_waits(initial, interval, timeout, retries=1):
    """Makes `MultiWorkerMirroredStrategy`'s waits for its peers end in an error.

    TensorFlow 2.21's coordination service waits without end for a worker
    that never starts. Without it, the strategy's own health check runs: the
    first check waits at most `initial` seconds for every worker (then
    `RuntimeError`), later ones every `interval` seconds fail after
    `timeout` (an int) and `retries` more tries (`UnavailableError` in the
    others, within a second of a kill). Class attributes, set before the
    strategy is made. Checked on TensorFlow 2.21.
    """
    from tensorflow.python.distribute import collective_all_reduce_strategy
    from tensorflow.python.eager import context

    context.context().configure_coordination_service(service_type="")
    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    extended._check_health_initial_timeout = float(initial)
    extended._check_health_interval = float(interval)
    extended._check_health_timeout = int(timeout)
    extended._check_health_retry_limit = int(retries)


def fix_multi_worker_fit():
    """Lets Keras 3.15.1's `fit` and `evaluate` run under `MultiWorkerMirroredStrategy`.

    Two bugs (keras-team/keras#20585) stop them with more than one worker:
    the symbolic build reduces a tuple of per-replica batches, which the
    collective strategy cannot, and the step's scalar logs are averaged
    along an axis they do not have. The build needs only shapes (this
    worker's first replica's batch serves), and the logs are averaged with
    `axis=None`. Process-wide, once; other strategies behave as before.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_transferkit_multi_worker", False):
        return
    reduce_per_replica = trainer.reduce_per_replica
    symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def multi_worker(strategy):
        return strategy is not None and trainer._collective_all_reduce_multi_worker(strategy)

    def reduce(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None)
            if isinstance(v, tf.distribute.DistributedValues) or tf.is_tensor(v) else v, values)

    def build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if not multi_worker(strategy):
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = next(it)
                break
        data_batch = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, data_batch)
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce
    trainer.TensorFlowTrainer._maybe_symbolic_build = build
    trainer._transferkit_multi_worker = True
