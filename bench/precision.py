"""float32 vs `--precision mixed` on this machine: feature extraction and a whole fine-tune.

1. Extraction: efficientnet_lite0 at 224 px, `extract_features` on 384
   random images in batches of 32 after a warm-up, built with
   `precision="float32"` and `"mixed"` (mixed_bfloat16 on a CPU, mixed_float16
   on a GPU), the same weights; images/s of each, their ratio, and how far
   the 16-bit features are from the float32 ones.
2. Fine-tune (`--train`): `transferkit train hymenoptera/train --val
   hymenoptera/val --backbone efficientnet_lite0 --head softmax` (the
   two-phase recipe with its defaults) with each precision, a process each,
   alternating `--repeats` times; wall time and best validation accuracy.

    flock /tmp/bench.lock .venv/bin/python bench/precision.py [--train] [--repeats 1]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from common import add_data_argument, hymenoptera

PRECISIONS = ("float32", "mixed")
IMAGES, BATCH, SIZE = 384, 32, 224


def extraction_rates():
    import keras
    import numpy as np

    import transferkit
    from transferkit.models.precision import policy_name

    x = np.random.default_rng(0).integers(0, 256, (IMAGES, SIZE, SIZE, 3), dtype=np.uint8)
    weights, rates, features = None, {}, {}
    for precision in PRECISIONS:
        model = transferkit.build("efficientnet_lite0", 2, input_shape=(SIZE, SIZE, 3),
                                  precision=precision)
        weights = weights or model.get_weights()
        model.set_weights(weights)
        extractor = transferkit.feature_extractor(model)
        transferkit.extract_features(extractor, x[:2 * BATCH], batch_size=BATCH)  # traced
        start = time.perf_counter()
        features[precision] = transferkit.extract_features(extractor, x, batch_size=BATCH)
        rates[precision] = IMAGES / (time.perf_counter() - start)
    a, b = (np.asarray(features[p], np.float64) for p in PRECISIONS)
    print(f"mixed is {policy_name('mixed')} here; devices {keras.distribution.list_devices()}")
    for precision in PRECISIONS:
        print(f"extraction, {precision}: {rates[precision]:.1f} img/s")
    print(f"extraction speed mixed / float32: {rates['mixed'] / rates['float32']:.2f}x")
    print(f"features: largest difference / largest value {np.abs(a - b).max() / np.abs(a).max():.4f}, "
          f"cosine {(a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()):.4f}")


def fine_tunes(data, repeats):
    seconds = {p: [] for p in PRECISIONS}
    accuracy = {p: [] for p in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for precision in PRECISIONS:
                out = pathlib.Path(tmp) / f"{precision}-{repeat}"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "transferkit.cli", "train",
                                str(data / "train"), "--val", str(data / "val"),
                                "--backbone", "efficientnet_lite0", "--head", "softmax",
                                "--precision", precision, "--no-report", "--out", str(out)],
                               check=True, capture_output=True)
                seconds[precision].append(time.perf_counter() - start)
                metrics = json.loads((out / "metrics.json").read_text())
                accuracy[precision].append(metrics["best_val_accuracy"])
                print(f"train --precision {precision}: {seconds[precision][-1]:.1f} s, best "
                      f"val_accuracy {accuracy[precision][-1]:.4f}", flush=True)
    median = {p: statistics.median(seconds[p]) for p in PRECISIONS}
    print(f"fine-tune time mixed / float32: {median['mixed'] / median['float32']:.2f}x "
          f"({median['mixed']:.1f} s vs {median['float32']:.1f} s); best val_accuracy "
          f"{statistics.mean(accuracy['mixed']):.4f} vs {statistics.mean(accuracy['float32']):.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--train", action="store_true", help="also time whole fine-tunes")
    parser.add_argument("--repeats", type=int, default=1, help="fine-tunes of each precision")
    args = parser.parse_args(argv)
    extraction_rates()
    if args.train:
        data = hymenoptera(args.data)
        if data is None:
            return 2
        fine_tunes(data, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
