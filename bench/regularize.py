"""Benchmark: `transferkit.regularize` against the rebuild-from-config hack.

The hack (seed 000): set `layer.kernel_regularizer`, rebuild the model from its
config, and `set_weights` the saved weights back. transferkit sets the penalty
in place. Both run on ResNet50 at 224 px, each in a fresh process (so that peak
memory is that operation's own), several times; the script prints the median
time and the peak extra resident memory of each, and their ratios.

    .venv/bin/python bench/regularize.py [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples the resident set size every millisecond while in the block."""

    def __enter__(self):
        self.start = self.peak = _rss_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def extra(self):
        return self.peak - self.start


def one_run(method):
    import keras

    import transferkit

    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    penalty = keras.regularizers.L2(1e-4)
    with PeakMemory() as memory:
        start = time.perf_counter()
        if method == "transferkit":
            transferkit.regularize(model, kernel=penalty)
            result = model
        else:
            for layer in model.layers:
                if hasattr(layer, "kernel_regularizer"):
                    layer.kernel_regularizer = penalty
            weights = model.get_weights()
            result = keras.Model.from_config(model.get_config())
            result.set_weights(weights)
        seconds = time.perf_counter() - start
    assert len(result.losses) > 50
    return {"seconds": seconds, "peak_extra_mb": memory.extra / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=["transferkit", "rebuild"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    results = {}
    for method in ("rebuild", "transferkit"):
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--one", method], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        results[method] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    ours, hack = results["transferkit"], results["rebuild"]
    print(f"ResNet50, 224 px, median of {args.repeats} fresh processes each")
    print(f"{'method':<36}{'time (s)':>10}{'peak extra RSS (MiB)':>24}")
    print(f"{'rebuild from config + set_weights':<36}{hack['seconds']:>10.3f}{hack['peak_extra_mb']:>24.1f}")
    print(f"{'transferkit.regularize':<36}{ours['seconds']:>10.3f}{ours['peak_extra_mb']:>24.1f}")
    print(f"time ratio (ours / hack): {ours['seconds'] / hack['seconds']:.3f}")
    print(f"memory ratio (ours / hack): {ours['peak_extra_mb'] / max(hack['peak_extra_mb'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
