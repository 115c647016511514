"""Data parallelism on Keras' own engines: where a run's models live and train.

`placement(devices)` gives the process's `Placement`: synchronous data
parallelism, the global batch split evenly across devices, through the
engine of the Keras backend, never through code of ours:

- TensorFlow: `tf.distribute.MirroredStrategy` on one machine, and
  `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG` names several
  workers (one process per machine);
- JAX: `keras.distribution.DataParallel` over the process's devices, or over
  every process's after `initialize` (`jax.distributed`); `ModelParallel`
  (large kernels split) with `model_parallel`;
- PyTorch: one device (`devices > 1` is refused in one line).

A strategy or distribution made by the caller serves instead inside
`using(engine)`: the workflows' `distribution=` argument.

A machine without GPUs has one CPU device. Asked for more, TensorFlow splits
its CPU into that many logical devices; JAX needs
`XLA_FLAGS=--xla_force_host_platform_device_count=N` before it starts. Both
exist to test the distribution on an ordinary machine: they do not speed it up.

Example:

>>> where = placement(1)
>>> where.replicas, where.is_chief
(1, True)
>>> with where.scope():
...     pass  # build and train models here
"""

import contextlib
import json
import math
import numbers
import os

from transferkit.errors import TransferkitError

# How long the processes of a multi-process run wait for one another: at the
# start, for every process to join, and then for any collective step (the
# gradients' all-reduce). A worker that dies stops the others within it.
TIMEOUT = 120
# JAX: a process silent this long (seconds) is taken for dead (a killed one
# is seen at once: its connections close), and one that finishes waits this
# long for the others at exit (process 0 writes the run folder and report).
HEARTBEAT = 30
SHUTDOWN = 600

# A kernel is split over model-parallel devices from this many values on.
SPLIT_FROM = 4096
# One placement per (backend, devices, model_parallel) and process: engines
# are set up once.
_PLACEMENTS = {}
# Whether this process joined others (`initialize`), whether it is now
# running a workflow as a follower (`following`), and the placement of an
# engine the caller made (`using`).
_JOINED = {"jax": False}
_FOLLOWING = {"now": False}
_GIVEN = {"placement": None}


def check_devices(name, value):
    """`devices` as a `TrainingConfig` check: an int >= 1, or `"all"`."""
    if value == "all":
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise TransferkitError(f"{name} must be an int >= 1 or 'all', got {value!r}.")
    return int(value)


def parse_devices(text):
    """`--devices`'s text: `"all"` or a count."""
    return "all" if text.strip().lower() == "all" else int(text)


class Placement:
    """Where this process's models live: one device, or data-parallel over several.

    Made by `placement`; not meant to be constructed directly.

    Attributes:
        engine: `None` (one device, no distribution), `"mirrored"`,
            `"multi_worker_mirrored"` (TensorFlow), `"data_parallel"` or
            `"model_parallel"` (JAX).
        replicas: the devices (copies of the model, with model parallelism)
            the global batch is split across, over all processes.
        processes: the processes training together (1 on one machine).
        process_index: this process's index; 0 is the chief, which alone
            writes the run folder.
        devices: the devices' names (this process's, for TensorFlow).
        strategy: the `tf.distribute.Strategy` or `keras.distribution.
            Distribution`, or `None`.
    """

    def __init__(self, engine=None, strategy=None, devices=("default",), replicas=1,
                 processes=1, process_index=0, model_parallel=None):
        self.engine = engine
        self.strategy = strategy
        self.devices = tuple(devices)
        self.replicas = replicas
        self.processes = processes
        self.process_index = process_index
        self.model_parallel = model_parallel

    @property
    def is_chief(self):
        """Whether this process writes the run's files (process 0)."""
        return self.process_index == 0

    @property
    def distributed(self):
        return self.engine is not None

    @contextlib.contextmanager
    def scope(self):
        """The context in which models are built, compiled, trained and run.

        With several processes, an engine's error (most often: another
        process stopped, and the collective steps with it) becomes one line.
        """
        if self.strategy is None:
            yield
            return
        try:
            with self.strategy.scope():
                yield
        except (TransferkitError, KeyboardInterrupt):
            raise
        except Exception as e:  # the engines raise many kinds
            if self.processes == 1:
                raise
            first = next((line for line in str(e).splitlines() if line.strip()),
                         type(e).__name__)
            error = TransferkitError(
                f"Process {self.process_index} of this {self.processes}-process run stopped: "
                f"{type(e).__name__}: {first[:300]}. If another process stopped first, see its "
                "own error; start them all again.")
            # The engine cannot shut down cleanly without its peers (JAX waits,
            # then aborts): the command line exits at once after saying so.
            error.process_lost = True
            raise error from None

    @contextlib.contextmanager
    def synchronized_batchnorm(self, model):
        """While entered, `model`'s BatchNormalization layers in training use the global batch.

        Under a TensorFlow strategy each replica would otherwise normalize by
        its own slice's statistics (JAX computes over the global batch
        already). Layers in inference mode (`batchnorm="frozen"`) are not
        affected. Afterwards the layers are as they were, so the saved model
        loads on any backend.
        """
        from transferkit._walk import iter_layers

        layers = [layer for _, layer, _ in iter_layers(model)
                  if isinstance(layer, _batchnorm_class()) and not layer.synchronized] \
            if self.engine in ("mirrored", "multi_worker_mirrored") else []
        for layer in layers:
            layer.synchronized = True
        try:
            yield
        finally:
            for layer in layers:
                layer.synchronized = False

    def check_batch(self, batch_size):
        """Fails in one line unless `batch_size` splits evenly over the replicas."""
        if batch_size % self.replicas:
            low = max(self.replicas, batch_size // self.replicas * self.replicas)
            raise TransferkitError(
                f"--batch-size {batch_size} does not split evenly over {self.replicas} "
                f"devices: it is the global batch; give a multiple of {self.replicas}, like "
                f"{low} or {low + self.replicas}.")

    def describe(self, batch_size):
        """One line: the engine, the devices, and the global and per-device batch."""
        where = (f"{self.processes} processes, {self.replicas} devices in all"
                 if self.processes > 1 else
                 f"{self.replicas} devices ({', '.join(_short(d) for d in self.devices)})")
        if self.engine == "model_parallel":
            return (f"Model-parallel on {len(self.devices)} devices through "
                    f"{_ENGINE_NAMES[self.engine]}: large kernels split over "
                    f"{self.model_parallel}, data-parallel over {self.replicas}; global batch "
                    f"{batch_size}, {batch_size // self.replicas} per model copy.")
        return (f"Data-parallel on {where} through {_ENGINE_NAMES[self.engine]}: global batch "
                f"{batch_size}, {batch_size // self.replicas} per device.")

    def __repr__(self):
        return (f"Placement(engine={self.engine!r}, replicas={self.replicas}, "
                f"processes={self.processes}, process_index={self.process_index})")


def _batchnorm_class():
    import keras

    return keras.layers.BatchNormalization


_ENGINE_NAMES = {
    "model_parallel": "keras.distribution.ModelParallel",
    "mirrored": "tf.distribute.MirroredStrategy",
    "multi_worker_mirrored": "tf.distribute.MultiWorkerMirroredStrategy",
    "data_parallel": "keras.distribution.DataParallel",
}


def _short(name):
    """`/job:localhost/replica:0/task:0/device:CPU:1` -> `CPU:1`."""
    return name.split("device:")[-1]


def placement(devices=1, model_parallel=None):
    """This process's `Placement` for `devices` (a count, or `"all"`).

    The same arguments give the same object for the life of the process:
    an engine is set up once. One device (or `"all"` of one) is no
    distribution at all: models are built and trained as usual.

    Args:
        devices: how many devices of this process to train on, or `"all"`.
            Defaults to 1.
        model_parallel: JAX only: split each large kernel over this many of
            the devices (`keras.distribution.ModelParallel`), for a model too
            big for one device; data-parallel over the rest. Defaults to
            `None` (every device holds the whole model).

    Raises:
        TransferkitError: more devices than there are (with what to do),
            several on the PyTorch backend, or model parallelism that does
            not divide the devices or is asked of TensorFlow.
    """
    import keras

    devices = check_devices("devices", devices)
    model_parallel = None if model_parallel in (None, 1) else model_parallel
    given = _GIVEN["placement"]
    if given is not None:
        if devices != 1 or model_parallel is not None:
            raise TransferkitError("Give devices (and model_parallel) or distribution=, not both.")
        return given
    backend = keras.backend.backend()
    key = (backend, devices, model_parallel)
    if model_parallel is not None and backend != "jax":
        raise TransferkitError(
            f"--model-parallel is for the JAX backend (keras.distribution.ModelParallel); on "
            f"{backend} every device holds the whole model: leave it out, or use "
            "KERAS_BACKEND=jax.")
    if key not in _PLACEMENTS:
        if backend == "tensorflow":
            made = _tensorflow(devices)
        elif backend == "jax":
            made = _jax(devices, model_parallel)
        elif devices not in (1, "all"):
            raise TransferkitError(
                f"--devices {devices}: training on several devices is not supported on the "
                f"{backend} backend yet; use KERAS_BACKEND=tensorflow (the default) or jax, "
                "or --devices 1.")
        else:
            made = Placement()
        _PLACEMENTS[key] = made
    return _PLACEMENTS[key]


@contextlib.contextmanager
def using(engine):
    """While entered, every model trains on `engine`, a strategy or distribution you made.

    `engine` is a `tf.distribute.Strategy` (TensorFlow) or a
    `keras.distribution.Distribution` (JAX): `placement()` returns its
    `Placement` instead of making one from a device count. The workflows'
    `distribution=` argument enters it. `None` changes nothing.

    Example:

    >>> strategy = tf.distribute.MirroredStrategy(["GPU:0", "GPU:1"])  # doctest: +SKIP
    >>> with using(strategy):  # doctest: +SKIP
    ...     train("photos", "efficientnet_lite0", "runs/two")
    """
    if engine is None:
        yield
        return
    before, _GIVEN["placement"] = _GIVEN["placement"], placement_of(engine)
    try:
        yield
    finally:
        _GIVEN["placement"] = before


def placement_of(engine):
    """The `Placement` of a `tf.distribute.Strategy` or `keras.distribution.Distribution`."""
    if hasattr(engine, "device_mesh") and hasattr(engine, "get_data_layout"):  # Keras'

        mesh = engine.device_mesh
        batch = getattr(engine, "batch_dim_name", None) or mesh.axis_names[0]
        replicas = mesh.shape[list(mesh.axis_names).index(batch)]
        devices = [str(d) for d in mesh.devices.flatten()]
        processes = max(engine.num_processes, 1)
        index = 0
        if processes > 1:
            import jax

            index = jax.process_index()
        split = len(devices) // replicas
        return Placement("model_parallel" if split > 1 else "data_parallel", engine, devices,
                         replicas, processes=processes, process_index=index,
                         model_parallel=split if split > 1 else None)
    if hasattr(engine, "num_replicas_in_sync") and hasattr(engine, "extended"):
        resolver = getattr(engine, "cluster_resolver", None)
        spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
        processes = max(len(spec.get("worker", [])), 1)
        kind = "multi_worker_mirrored" if processes > 1 else "mirrored"
        index = int(resolver.task_id or 0) if processes > 1 else 0
        if processes > 1:
            from transferkit._compat import fix_multi_worker_fit

            fix_multi_worker_fit()
        return Placement(kind, engine, engine.extended.worker_devices,
                         engine.num_replicas_in_sync, processes=processes, process_index=index)
    raise TransferkitError(
        f"distribution= takes a tf.distribute.Strategy or a keras.distribution.Distribution; "
        f"got {type(engine).__name__}.")


def accepts_distribution(workflow):
    """Gives `workflow` a `distribution=` argument: runs it inside `using(distribution)`."""
    import functools

    @functools.wraps(workflow)
    def run(*args, distribution=None, **kwargs):
        with using(distribution):
            return workflow(*args, **kwargs)

    return run


def set_up_early(devices=1):
    """Sets up the placement now if it needs the engine untouched; returns it, or `None`.

    TensorFlow fixes its devices, and `TF_CONFIG`'s workers must meet, before
    its first operation (reading a model is one): workflows call this before
    anything else. One device in one process needs nothing (and imports
    nothing).
    """
    if _GIVEN["placement"] is not None:
        return _GIVEN["placement"]
    if devices == 1 and not os.environ.get("TF_CONFIG") and not _JOINED["jax"]:
        return None
    return placement(devices)


def is_follower(devices=1):
    """Whether this process trains with others but is not process 0: it writes nothing.

    `False` inside `following()`, where the workflow runs as a follower.
    """
    where = set_up_early(devices)
    return where is not None and not where.is_chief and not _FOLLOWING["now"]


@contextlib.contextmanager
def following():
    """While entered, this process is running a workflow as a follower (`is_follower`)."""
    before, _FOLLOWING["now"] = _FOLLOWING["now"], True
    try:
        yield
    finally:
        _FOLLOWING["now"] = before


def is_multi_process(devices=1):
    """Whether this process trains together with other processes."""
    where = set_up_early(devices)
    return where is not None and where.processes > 1


def _workers():
    """The workers `TF_CONFIG` names (an empty list without it), checked."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return [], 0
    try:
        config = json.loads(text)
        workers = list(config["cluster"]["worker"])
        task = config.get("task", {})
        index = int(task.get("index", 0))
    except (ValueError, KeyError, TypeError) as e:
        raise TransferkitError(
            f"TF_CONFIG is not a cluster description ({e}); set it to "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
            '"index": I}}, or unset it.') from None
    if task.get("type", "worker") != "worker" or not 0 <= index < len(workers):
        raise TransferkitError(
            f"TF_CONFIG's task must be a worker with an index below {len(workers)}; got "
            f"{task}.")
    return workers, index


def _tensorflow(devices):
    import tensorflow as tf

    workers, index = _workers()
    if len(workers) > 1:
        return _multi_worker(tf, devices, workers, index)
    gpus = tf.config.list_physical_devices("GPU")
    kind = "GPU" if gpus else "CPU"
    if not gpus and devices not in (1, "all"):
        _split_cpu(tf, devices)
    available = [d.name for d in tf.config.list_logical_devices(kind)]
    count = len(available) if devices == "all" else devices
    if count > len(available):
        raise TransferkitError(
            f"--devices {devices}: TensorFlow sees {len(available)} {kind} device"
            f"{'s' if len(available) != 1 else ''}; give --devices {len(available)} or all.")
    if count == 1:
        return Placement(devices=available[:1])
    strategy = tf.distribute.MirroredStrategy(available[:count])
    return Placement("mirrored", strategy, available[:count], count)


def _split_cpu(tf, count):
    """Splits the CPU into `count` logical devices (before TensorFlow's first operation)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        raise TransferkitError(
            f"--devices {count} on a CPU splits it into {count} logical devices, which "
            "TensorFlow allows only before its first operation; ask for the devices before "
            "anything else runs (a new process).") from None


def _multi_worker(tf, devices, workers, index):
    """`MultiWorkerMirroredStrategy` for the cluster of `TF_CONFIG`, with a bounded wait."""
    if devices not in (1, "all"):
        raise TransferkitError(
            f"--devices {devices} with TF_CONFIG's {len(workers)} workers: each worker "
            "trains on its own GPUs (all of them) or its CPU; leave --devices out or give "
            "all.")
    from transferkit._compat import bound_multi_worker_waits, fix_multi_worker_fit

    # At the start each worker waits TIMEOUT s for all; then a worker that
    # dies stops the others within seconds (health checks every 5 s, an
    # answer within 10 s, twice), and a collective step waits at most TIMEOUT s.
    bound_multi_worker_waits(initial=TIMEOUT, interval=5, timeout=10, retries=2)
    fix_multi_worker_fit()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=TIMEOUT)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as e:
        raise TransferkitError(
            f"Worker {index} of TF_CONFIG's {len(workers)} waited {TIMEOUT} s for the others "
            f"({e}); start every worker within that time, with the same cluster in "
            "TF_CONFIG.") from None
    extended = strategy.extended
    replicas = strategy.num_replicas_in_sync
    return Placement("multi_worker_mirrored", strategy, extended.worker_devices, replicas,
                     processes=len(workers), process_index=index)


def _jax(devices, model_parallel=None):
    import jax
    import keras

    processes = jax.process_count()
    available = keras.distribution.list_devices()
    local = jax.local_device_count()
    kind = available[0].split(":")[0] if available else "cpu"
    if processes > 1:
        if devices not in (1, "all"):
            raise TransferkitError(
                f"--devices {devices} with {processes} JAX processes: each trains on all of "
                "its devices; leave --devices out or give all.")
        # Our batches are arrays and PyDatasets, not tf.data: each process
        # serves its own part of every global batch (`transferkit.data.stream.
        # EvenBatches`), not Keras' sharding of a dataset.
        distribution = keras.distribution.DataParallel(devices=available,
                                                       auto_shard_dataset=False)
        return Placement("data_parallel", distribution, available, len(available),
                         processes=processes, process_index=jax.process_index())
    count = len(available) if devices == "all" else devices
    if model_parallel is not None:
        return _model_parallel(available, count, local, model_parallel)
    if count > local:
        hint = (f"; on a CPU, start Python with XLA_FLAGS=--xla_force_host_platform_device_count"
                f"={count} to split it into {count} (for testing: no faster)"
                if kind == "cpu" else "")
        raise TransferkitError(f"--devices {devices}: JAX sees {local} {kind.upper()} "
                               f"device{'s' if local != 1 else ''}{hint}.")
    if count == 1:
        return Placement(devices=available[:1])
    distribution = keras.distribution.DataParallel(devices=available[:count])
    return Placement("data_parallel", distribution, available[:count], count)


def _model_parallel(available, count, local, model_parallel):
    """`ModelParallel` on a (batch, model) mesh of `count` devices, kernels split over "model"."""
    import keras

    if count > local or count % model_parallel:
        raise TransferkitError(
            f"--model-parallel {model_parallel} needs a number of devices it divides, at most "
            f"the {local} there are; got --devices {count}.")
    mesh = keras.distribution.DeviceMesh((count // model_parallel, model_parallel),
                                         ["batch", "model"], available[:count])
    distribution = _kernels_split(keras)(
        layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch",
        auto_shard_dataset=False)
    return Placement("model_parallel", distribution, available[:count], count // model_parallel,
                     model_parallel=model_parallel)


def _kernels_split(keras):
    """`ModelParallel` that splits every large 2-D kernel's output axis over the "model" axis.

    Dense kernels and embeddings (the bulk of a transformer's feed-forward
    layers), by shape: the last axis when the "model" axis divides it and
    the variable has at least `SPLIT_FROM` values; everything else is
    replicated. Convolution kernels stay whole: split ones crashed XLA's CPU
    backend (jax 0.10.2, Keras 3.15.1). `split` lists what was split.
    """

    class KernelsSplit(keras.distribution.ModelParallel):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.split = []  # the paths of the variables split so far

        def get_variable_layout(self, variable):
            shape = tuple(variable.shape)
            size = self.device_mesh.shape[list(self.device_mesh.axis_names).index("model")]
            axes = [None] * len(shape)
            if len(shape) == 2 and shape[-1] % size == 0 and math.prod(shape) >= SPLIT_FROM:
                axes[-1] = "model"
                if variable.path not in self.split:
                    self.split.append(variable.path)
            return keras.distribution.TensorLayout(axes, self.device_mesh)

    return KernelsSplit


def initialize(coordinator=None, num_processes=None, process_id=None, *, timeout=TIMEOUT):
    """Joins a multi-process JAX run: `keras.distribution.initialize`, with a bounded wait.

    Call it first, in every process, before anything else uses JAX. Without
    arguments, JAX's own environment settings (or a cluster it detects)
    decide. TensorFlow's processes find one another through `TF_CONFIG`
    instead (`placement`).

    Args:
        coordinator: `"host:port"` of process 0.
        num_processes: how many processes train together.
        process_id: this process's index, 0 to `num_processes - 1`.
        timeout: seconds to wait for every process to join. Defaults to
            `TIMEOUT`.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise TransferkitError("--coordinator, --num-processes and --process-id go together: "
                               "give all three (the same coordinator in every process).")
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise TransferkitError(
            f"--coordinator is for the JAX backend; on {backend}, "
            + ("describe the cluster in TF_CONFIG (README: Training on several devices and "
               "machines)." if backend == "tensorflow" else "multi-process training is not "
               "supported yet."))
    if all(given):
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) \
                or num_processes < 1:
            raise TransferkitError(f"--num-processes must be an int >= 1, got "
                                   f"{num_processes!r}.")
        if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise TransferkitError(f"--process-id must be in 0..{num_processes - 1}, got "
                                   f"{process_id!r}.")
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit():
            raise TransferkitError(f"--coordinator takes HOST:PORT, got {coordinator!r}.")
    import jax

    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=HEARTBEAT,
                                   shutdown_timeout_seconds=SHUTDOWN)
        _JOINED["jax"] = True
    except RuntimeError as e:  # the engine's own wording, on one line
        raise TransferkitError(
            f"Could not join the {num_processes or ''}-process run at {coordinator}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; check that every "
            f"process started within {timeout} s with the same --coordinator.") from None
