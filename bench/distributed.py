"""Data-parallel throughput on 1, 2 and 4 devices: what `--devices` costs or gains here.

Each (backend, devices) runs in its own process, as `--devices N` does: the
placement (`transferkit.training.distribution.placement`), then
mobilenet_v3_small (random weights, every layer training, BatchNorm over the
global batch) compiled and trained in its scope on random 96x96 images at a
global batch of 32. After a warm-up epoch (tracing), `--steps` steps are
timed; the figures are training images a second and milliseconds a step,
and the ratio to one device in the same run of this script.

On a CPU the devices are virtual (TensorFlow's logical devices, JAX's
`--xla_force_host_platform_device_count`): they share the same cores, so
the ratio measures the engines' overhead per step, not a speed-up. On a
machine with GPUs, `--devices` counts GPUs.

    flock /tmp/bench.lock .venv/bin/python bench/distributed.py [--backends tensorflow,jax]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

CHILD = "--child"


def child(backend, devices, steps, batch_size, size):
    """Runs in the subprocess: trains and prints one JSON line of figures."""
    import keras
    import numpy as np

    import transferkit
    from transferkit.training.distribution import placement

    where = placement(devices)
    where.check_batch(batch_size)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size * steps, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, batch_size * steps)
    with where.scope():
        keras.utils.set_random_seed(0)
        model = transferkit.build("mobilenet_v3_small", 2, weights=None,
                                  input_shape=(size, size, 3))
        model.compile("adam", "sparse_categorical_crossentropy")
        with where.synchronized_batchnorm(model):
            start = time.perf_counter()
            model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size,
                      epochs=1, verbose=0)  # tracing
            warm = time.perf_counter() - start
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
            seconds = time.perf_counter() - start
    print(json.dumps({"backend": backend, "devices": devices, "replicas": where.replicas,
                      "engine": where.engine, "warm_up_s": round(warm, 1),
                      "images_per_s": batch_size * steps / seconds,
                      "ms_per_step": 1000 * seconds / steps}))


def measure(backend, devices, args):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    if backend == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(args.devices)}"
    done = subprocess.run(
        [sys.executable, __file__, CHILD, backend, str(devices), str(args.steps),
         str(args.batch_size), str(args.image_size)],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{backend} on {devices} devices failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax",
                        help="comma-separated (default tensorflow,jax; jax skipped if absent)")
    parser.add_argument("--devices", default="1,2,4", help="device counts (default 1,2,4)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (default 32)")
    parser.add_argument("--image-size", type=int, default=96, help="pixels (default 96)")
    args = parser.parse_args(argv)
    args.devices = [int(d) for d in args.devices.split(",")]
    print(f"mobilenet_v3_small, random weights, all layers training, {args.image_size} px, "
          f"global batch {args.batch_size}, {args.steps} timed steps; {os.cpu_count()} CPUs.")
    print(f"{'backend':<11} {'devices':>7} {'engine':<22} {'images/s':>9} {'ms/step':>8} "
          f"{'vs 1':>6} {'overhead/step':>13} {'warm-up':>8}")
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped")
            continue
        base = None
        for devices in args.devices:
            row = measure(backend, devices, args)
            base = base or row
            print(f"{backend:<11} {devices:>7} {row['engine'] or 'none':<22} "
                  f"{row['images_per_s']:>9.1f} {row['ms_per_step']:>8.1f} "
                  f"{row['images_per_s'] / base['images_per_s']:>6.2f} "
                  f"{row['ms_per_step'] - base['ms_per_step']:>+10.1f} ms "
                  f"{row['warm_up_s']:>7.1f}s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
              int(sys.argv[6]))
    else:
        main()
