"""Where transfer pays: efficientnet_lite0 pretrained on ImageNet vs the same network from scratch.

hymenoptera/train, all of it (245 photos) or a seeded subset of `--per-class`
photos a class (linked, not copied); validation is the whole of
hymenoptera/val (153 photos). Each size trains the two-phase network twice
with `transferkit train --head softmax`: on the ImageNet weights, and with
`--from-scratch` (the same architecture, random weights, one phase of as many
epochs with every layer trainable). Prints best validation accuracy and time.

    flock /tmp/bench.lock .venv/bin/python bench/transfer_photos.py [--per-class 10]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import add_data_argument, hymenoptera


def subset(source, root, per_class, seed=0):
    """`root` with `per_class` photos of each class of `source`, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    for label in ("ants", "bees"):
        files = sorted((source / label).iterdir())
        (root / label).mkdir(parents=True)
        for i in sorted(rng.choice(len(files), per_class, replace=False)):
            (root / label / files[i].name).symlink_to(files[i].resolve())
    return root


def train(data, val, out, *options):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transferkit.cli", "train", str(data), "--val",
                    str(val), "--backbone", "efficientnet_lite0", "--head", "softmax",
                    "--no-report", "--quiet", "--out", str(out), *options], check=True,
                   capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics["best_val_accuracy"], time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--per-class", type=int, default=10,
                        help="photos a class in the small training set (default 10)")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    print("| training photos | pretrained (ImageNet) | from scratch |")
    print("|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        small = subset(data / "train", tmp / "small", args.per_class)
        for name, folder in ((2 * args.per_class, small), (245, data / "train")):
            pretrained = train(folder, data / "val", tmp / f"pre-{name}")
            scratch = train(folder, data / "val", tmp / f"scratch-{name}", "--from-scratch")
            print(f"| {name} | {pretrained[0]:.4f} ({pretrained[1]:.0f} s) | "
                  f"{scratch[0]:.4f} ({scratch[1]:.0f} s) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
